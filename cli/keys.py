"""``clearhouse keys``: create, rotate and retire the JWT and card keys; show what each protects."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime

GROUPS = ("keys",)


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
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
    elif args.cmd == "status":
        _print_status(out)
    else:
        for key, value in out.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0


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
