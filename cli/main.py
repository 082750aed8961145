"""The ``clearhouse`` command: operator tasks (migrations, merchants, API clients, operator
accounts, keys, wallets, bank accounts, customer erasure, dev certificates)."""

from __future__ import annotations

import argparse
import json
import sys

from cli import banks as banks_cli
from cli import clients as clients_cli
from cli import customers as customers_cli
from cli import devcerts as devcerts_cli
from cli import keys as keys_cli
from cli import operators as operators_cli
from cli import reports as reports_cli
from cli.args import non_negative_float
from cli.args import positive_int as _positive_int
from shared.config import Settings


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block: scripts read stderr
        self.exit(2, f"clearhouse: error: {message}\n")


def _score(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 100, got {text!r}")
    return value


def build_parser() -> Parser:
    p = Parser(prog="clearhouse", description=__doc__)
    sub = p.add_subparsers(dest="group", required=True, parser_class=Parser)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="cmd", required=True)
    db.add_parser(
        "upgrade",
        help="create the database and its roles if needed, migrate to the latest schema"
        " (as MIGRATION_DATABASE_URL) and grant the app role its privileges",
    )

    m = sub.add_parser("merchant", help="merchants").add_subparsers(dest="cmd", required=True)
    c = m.add_parser("create", help="create a merchant and its API credentials")
    c.add_argument("--name", required=True)
    c.add_argument("--webhook-url")
    c.add_argument("--json", action="store_true", help="one line of JSON")
    lim = m.add_parser("set-limits", help="limits in minor units for one currency and scope")
    lim.add_argument("--merchant", required=True)
    lim.add_argument("--currency", required=True, type=str.upper)
    lim.add_argument("--scope", choices=("merchant", "payer"), default="merchant")
    lim.add_argument("--per-transaction", type=_positive_int)
    lim.add_argument("--daily", type=_positive_int)
    lim.add_argument("--monthly", type=_positive_int)
    thr = m.add_parser("set-fraud-threshold", help="block at this risk score (0-100)")
    thr.add_argument("--merchant", required=True)
    thr.add_argument("--threshold", required=True, type=_score, metavar="0-100")
    rot = m.add_parser("rotate-webhook-secret", help="new webhook secret; the old one overlaps")
    rot.add_argument("--merchant", required=True)
    rot.add_argument("--overlap-hours", type=non_negative_float, help="default from settings")
    rot.add_argument("--json", action="store_true")
    url = m.add_parser("set-webhook-url", help="where webhooks go (pending retries too)")
    url.add_argument("--merchant", required=True)
    url.add_argument("--url", required=True)
    url.add_argument("--json", action="store_true")
    sus = m.add_parser("suspend", help="refuse the merchant's API clients (403 merchant_suspended)")
    sus.add_argument("--merchant", required=True)
    sus.add_argument("--reason")
    sus.add_argument("--json", action="store_true")
    res = m.add_parser("resume", help="lift a suspension")
    res.add_argument("--merchant", required=True)
    res.add_argument("--json", action="store_true")

    w = sub.add_parser("wallet", help="payer wallets").add_subparsers(dest="cmd", required=True)
    wc = w.add_parser("create", help="create a payer wallet")
    wc.add_argument("--owner", required=True)
    wc.add_argument("--currency", required=True, type=str.upper)
    wc.add_argument("--json", action="store_true")
    wf = w.add_parser("fund", help="credit a wallet (minor units)")
    wf.add_argument("--wallet", required=True)
    wf.add_argument("--amount", required=True, type=_positive_int)
    wf.add_argument("--json", action="store_true")

    b = sub.add_parser("blocklist", help="fraud blocklist").add_subparsers(
        dest="cmd", required=True
    )
    ba = b.add_parser("add", help="block a card fingerprint, wallet, IP or customer")
    ba.add_argument(
        "--kind", required=True, choices=("card_fingerprint", "wallet", "ip", "customer")
    )
    ba.add_argument("--value", required=True)
    ba.add_argument("--reason")
    ba.add_argument("--json", action="store_true")
    br = b.add_parser("remove", help="take a value off the blocklist")
    br.add_argument(
        "--kind", required=True, choices=("card_fingerprint", "wallet", "ip", "customer")
    )
    br.add_argument("--value", required=True)
    br.add_argument("--json", action="store_true")
    banks_cli.add_parsers(sub, m)
    reports_cli.add_parsers(sub)
    customers_cli.add_parsers(sub)
    clients_cli.add_parsers(sub)
    operators_cli.add_parsers(sub)
    keys_cli.add_parsers(sub)
    devcerts_cli.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.group in devcerts_cli.GROUPS:
            # No settings: it makes the files that TLS_* name, maybe before they exist.
            return devcerts_cli.run(args)
        # Built once, here, and passed down; a bad variable is a one-line error.
        settings = Settings.from_env()
        return _run(args, settings)
    except Exception as exc:  # one line for operators; no traceback, no secrets
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        print(f"clearhouse: error: {message}", file=sys.stderr)
        return 1


def _run(args, settings) -> int:
    if args.group in banks_cli.GROUPS:
        return banks_cli.run(args, settings)
    if (args.group, getattr(args, "cmd", None)) == ("merchant", "set-bank-account"):
        return banks_cli.set_bank_account(args, settings)
    if args.group in reports_cli.GROUPS:
        return reports_cli.run(args, settings)
    if args.group in clients_cli.GROUPS:
        return clients_cli.run(args, settings)
    if args.group in customers_cli.GROUPS:
        return customers_cli.run(args, settings)
    if args.group in operators_cli.GROUPS:
        return operators_cli.run(args, settings)
    if args.group in keys_cli.GROUPS:
        return keys_cli.run(args, settings)
    if args.group == "db":
        from shared.config import url_password
        from shared.db import roles
        from shared.db.migrate import upgrade

        password = url_password(settings.database_url, roles.APP)
        upgrade(settings.migration_url, app_password=password)
        print("database is at the latest schema")
        return 0

    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact
    from shared.security.vault import Vault
    from shared.services import merchants

    engine = get_engine(settings.database_url, "worker", settings.db_timeouts_worker)
    vault = Vault.from_settings(settings)
    out = transact(lambda: UnitOfWork(engine), _command, args, merchants, vault, settings)
    if getattr(args, "json", False):
        print(json.dumps(out, separators=(",", ":")))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0


def _command(uow, args, merchants, vault, settings) -> dict:
    # Every change here is audited as the OS user, in the change's transaction.
    who = operators_cli.actor()
    key = (args.group, args.cmd)
    if key == ("merchant", "create"):
        return merchants.create_merchant(
            uow, vault, args.name, args.webhook_url, settings.webhook_allow_private, actor=who
        )
    if key == ("merchant", "set-limits"):
        merchants.set_limits(
            uow,
            args.merchant,
            args.currency,
            args.scope,
            per_transaction=args.per_transaction,
            daily=args.daily,
            monthly=args.monthly,
            actor=who,
        )
        return {"merchant_id": args.merchant, "limits": "updated"}
    if key == ("merchant", "set-fraud-threshold"):
        merchants.set_fraud_threshold(uow, args.merchant, args.threshold, actor=who)
        return {"merchant_id": args.merchant, "fraud_block_threshold": args.threshold}
    if key in (("merchant", "rotate-webhook-secret"), ("merchant", "set-webhook-url")):
        return _webhook_command(args, uow, vault, settings, who)
    if key in (("merchant", "suspend"), ("merchant", "resume")):
        return _suspension_command(args, uow, who)
    if key == ("wallet", "create"):
        return merchants.create_wallet(uow, args.owner, args.currency, actor=who)
    if key == ("wallet", "fund"):
        return merchants.fund_wallet(uow, args.wallet, args.amount, actor=who)
    if key == ("blocklist", "add"):
        return merchants.block(uow, args.kind, args.value, args.reason, actor=_actor())
    if key == ("blocklist", "remove"):
        return merchants.unblock(uow, args.kind, args.value, actor=_actor())
    raise ValueError(f"unknown command {' '.join(key)}")


def _actor():
    from shared.services.audit import Actor

    return Actor(operators_cli.actor())


def _webhook_command(args, uow, vault, settings, who: str) -> dict:
    from shared.services import webhook_endpoints as endpoints

    if args.cmd == "set-webhook-url":
        allow = settings.webhook_allow_private
        return endpoints.set_url(uow, vault, args.merchant, args.url, allow, actor=who)
    overlap = args.overlap_hours
    if overlap is None:
        overlap = settings.webhook_rotation_overlap_h
    return endpoints.rotate_secret(uow, vault, args.merchant, overlap, actor=who)


def _suspension_command(args, uow, who: str) -> dict:
    from shared.domain.merchant_admin import reason
    from shared.services import merchant_admin

    if args.cmd == "resume":
        merchant_admin.resume(uow, who, args.merchant)
        return {"merchant_id": args.merchant, "suspended": False}
    # The API's rule for a reason (its length), worded for --reason.
    try:
        why = reason(args.reason, "--reason")
    except ValueError as exc:
        raise ValueError(str(exc).replace("`", "")) from None
    done = merchant_admin.suspend(uow, who, args.merchant, why)
    return {"merchant_id": args.merchant, "suspended": True, "suspended_at": done["suspended_at"]}


if __name__ == "__main__":
    sys.exit(main())
