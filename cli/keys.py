"""``clearhouse keys``: create, rotate and retire the JWT and card keys; show what each protects."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime

GROUPS = ("keys",)
# The commands that change key files: each appends one audit row once its change is made.
AUDITED = {
    "init": ("keys.init", "keys"),
    "rotate-jwt": ("keys.rotate_jwt", "jwt"),
    "rotate-card": ("keys.rotate_card", "card"),
    "retire-card": ("keys.retire_card", "card"),
}


def _version(text: str) -> str:
    # "--version 1" and "--version v1" name the same card key.
    if re.fullmatch(r"\d+", text):
        return f"v{text}"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", text):
        raise argparse.ArgumentTypeError(f"not a card key version: {text!r}")
    return text


def add_parsers(sub) -> None:
    """Add the keys group to the main parser's subcommands."""
    k = sub.add_parser("keys", help="JWT and card keys").add_subparsers(dest="cmd", required=True)
    for name, text in (
        ("init", "create the key files that are missing (how production gets its first keys)"),
        ("rotate-jwt", "a new JWT signing key; old keys verify until their tokens expire"),
        ("rotate-card", "a new card key version; the re-encrypt job moves every row to it"),
        ("status", "every key, its state, and how many rows each card key still protects"),
    ):
        parser = k.add_parser(name, help=text)
        parser.add_argument("--json", action="store_true")
        if name == "rotate-jwt":
            parser.add_argument(
                "--ring",
                choices=("merchant", "operator"),
                default="merchant",
                help="merchant access tokens' keys (default) or operator tokens'",
            )
    r = k.add_parser("retire-card", help="remove a card key version no row uses any more")
    r.add_argument("--version", required=True, type=_version, help="N or vN")
    r.add_argument("--json", action="store_true")


def run(args, settings) -> int:
    """Run one keys command; return the exit status."""
    from shared.services import keys

    now = datetime.now(UTC)
    if args.cmd == "init":
        out = keys.init(settings, now)
    elif args.cmd == "rotate-jwt":
        out = keys.rotate_jwt(settings, now, args.ring)
    elif args.cmd == "rotate-card":
        out = keys.rotate_card(settings, now)
    else:
        out = _with_database(args, settings, now)
    # `init` that found every file there changed nothing: no row.
    created = args.cmd != "init" or any(str(v).startswith("created") for v in out.values())
    if args.cmd in AUDITED and created:
        _audit(settings, args.cmd, out, getattr(args, "ring", "merchant"))
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
    elif args.cmd == "status":
        _print_status(out)
    else:
        for key, value in out.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0


def _audit(settings, cmd: str, out: dict, ring: str = "merchant") -> None:
    """The command's audit row, as ``cli:<os user>``: what it did (key ids and versions).

    A file is no transaction: the row is written right after the change, so a
    change whose row could not be written says so (the command fails) rather
    than go unrecorded silently. ``out`` names keys, never holds one.
    """
    from cli.operators import actor
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact
    from shared.services import audit

    action, target = AUDITED[cmd]
    if cmd == "rotate-jwt" and ring != "merchant":
        target = f"{ring}_jwt"  # the operator tokens' ring
    engine = get_engine(settings.database_url, "worker", settings.db_timeouts_worker)
    try:
        transact(lambda: UnitOfWork(engine), audit.record_if, actor(), action, target, after=out)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RuntimeError(
            f"{cmd} is done ({json.dumps(out, separators=(',', ':'))}) but its audit row"
            f" could not be written: {reason}"
        ) from None


def _with_database(args, settings, now) -> dict:
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact
    from shared.services import keys

    # Counting scans whole tables: the report timeouts, not the worker's.
    engine = get_engine(settings.database_url, "report", settings.db_timeouts_report)
    if args.cmd == "status":
        return transact(lambda: UnitOfWork(engine), keys.status, settings, now)
    return transact(lambda: UnitOfWork(engine), keys.retire_card, settings, args.version)


def _print_status(out: dict) -> None:
    jwt, card = out["jwt"], out["card"]
    print(f"jwt keys (from {jwt['source']}):")
    for k in jwt["keys"]:
        times = f"created {k['created_at'] or 'unknown'}"
        if k["retired_at"]:
            times += f", retired {k['retired_at']}, verifies until {k['verifies_until']}"
        print(f"  {k['kid']}  {k['state']}  {times}")
    print(f"card keys (from {card['source']}), current {card['current_version']}:")
    for v in card["versions"]:
        mark = " (current)" if v["current"] else "" if v["known"] else " (NO KEY)"
        columns = ", ".join(f"{c} {n}" for c, n in v["rows_by_column"].items())
        print(f"  {v['version']}{mark}: {v['rows']} rows ({columns})")
