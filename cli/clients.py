"""``clearhouse client create|rotate-secret|revoke|list``: a merchant's API clients."""

from __future__ import annotations

import argparse
import json

from cli.args import non_negative_float
from shared.domain import scopes as S
from shared.domain.cert_binding import normalize_sha256

GROUPS = ("client",)
# As webhook secrets: a day for the merchant to roll every server over.
DEFAULT_OVERLAP_H = 24.0


def _scopes(text: str) -> tuple[str, ...]:
    try:
        return S.parse(text, ",")
    except S.ScopeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fingerprint(text: str) -> str:
    try:
        return normalize_sha256(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None


def add_parsers(sub) -> None:
    """Add the client group to the main parser's subcommands."""
    c = sub.add_parser("client", help="API clients").add_subparsers(dest="cmd", required=True)
    new = c.add_parser("create", help="a new API client of a merchant (its secret shown once)")
    new.add_argument("--merchant", required=True)
    new.add_argument(
        "--scopes", type=_scopes, default=S.ALL_SCOPES, help="comma-separated; default: all"
    )
    new.add_argument("--cert-sha256", type=_fingerprint, help="bind to a client certificate")
    new.add_argument("--json", action="store_true", help="one line of JSON")
    rot = c.add_parser("rotate-secret", help="a new secret; the old one works until the overlap")
    rot.add_argument("--client", required=True)
    rot.add_argument(
        "--overlap-h", type=non_negative_float, default=DEFAULT_OVERLAP_H, help="default 24"
    )
    rot.add_argument("--json", action="store_true")
    rev = c.add_parser("revoke", help="refuse the client, its refresh and access tokens")
    rev.add_argument("--client", required=True)
    rev.add_argument("--json", action="store_true")
    ls = c.add_parser("list", help="a merchant's clients (no secrets)")
    ls.add_argument("--merchant", required=True)
    ls.add_argument("--json", action="store_true")


def run(args, settings) -> int:
    """Run one client command; print its result; return the exit status."""
    from cli.operators import actor
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact
    from shared.services import clients

    who = actor()  # the audit trail's name for every change here
    commands = {
        "create": lambda u: clients.create_client(
            u, args.merchant, args.scopes, args.cert_sha256, actor=who
        ),
        "rotate-secret": lambda u: clients.rotate_secret(u, args.client, args.overlap_h, actor=who),
        "revoke": lambda u: clients.revoke_client(u, args.client, actor=who),
        "list": lambda u: clients.list_clients(u, args.merchant),
    }
    engine = get_engine(settings.database_url, "worker", settings.db_timeouts_worker)
    out = transact(lambda: UnitOfWork(engine), commands[args.cmd])
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
    elif args.cmd == "list":
        for client in out["clients"]:
            print(_line(client))
    else:
        print(_line(out, "\n"))
    return 0


def _line(fields: dict, separator: str = "  ") -> str:
    """``key: value`` pairs; lists space-separated, unset values left out."""
    shown = {k: " ".join(v) if isinstance(v, list) else v for k, v in fields.items()}
    return separator.join(f"{k}: {v}" for k, v in shown.items() if v is not None)
