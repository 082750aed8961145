"""``clearhouse operator create|disable``: operator accounts, audited as ``cli:<os user>``."""

from __future__ import annotations

import getpass
import json

from shared.domain.operators import ROLES

GROUPS = ("operator",)


def add_parsers(sub) -> None:
    """Add the operator group to the main parser's subcommands."""
    o = sub.add_parser("operator", help="operator accounts").add_subparsers(
        dest="cmd", required=True
    )
    new = o.add_parser("create", help="a new operator: TOTP enrolment and temporary password")
    new.add_argument("--email", required=True)
    new.add_argument("--role", required=True, choices=ROLES)
    new.add_argument("--json", action="store_true", help="one line of JSON")
    off = o.add_parser("disable", help="refuse an operator from now on")
    off.add_argument("--email", required=True)
    off.add_argument("--json", action="store_true")


def actor() -> str:
    """Who the audit trail names for a CLI change: the OS user running it."""
    return f"cli:{getpass.getuser()}"


def run(args, settings) -> int:
    """Run one operator command; print its result; return the exit status."""
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact
    from shared.security.vault import Vault
    from shared.services import operators

    who = actor()
    if args.cmd == "create":
        vault = Vault.from_settings(settings)
        command = lambda u: operators.create_operator(u, vault, args.email, args.role, who)  # noqa: E731
    else:
        command = lambda u: operators.disable_operator(u, args.email, who)  # noqa: E731
    engine = get_engine(settings.database_url, "worker", settings.db_timeouts_worker)
    out = transact(lambda: UnitOfWork(engine), command)
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
        return 0
    print("\n".join(f"{k}: {v}" for k, v in out.items()))
    if args.cmd == "create":
        _print_qr(out["otpauth_uri"])
    return 0


def _print_qr(uri: str) -> None:
    """The enrolment URI as a terminal QR code, for an authenticator app to scan."""
    import qrcode

    code = qrcode.QRCode(border=1)
    code.add_data(uri)
    code.print_ascii(invert=True)
