"""``clearhouse customer erase``: a customer's personal data, erased on request (audited)."""

from __future__ import annotations

import json

GROUPS = ("customer",)


def add_parsers(sub) -> None:
    """Add the customer group to the main parser's subcommands."""
    c = sub.add_parser("customer", help="customers' personal data").add_subparsers(
        dest="cmd", required=True
    )
    e = c.add_parser(
        "erase",
        help="tombstone a customer's personal data on its payments (ids, amounts, ledger stay)",
    )
    e.add_argument("--merchant", required=True)
    e.add_argument("--customer", required=True, help="the customer id the merchant sent")
    e.add_argument("--json", action="store_true", help="one line of JSON")


def run(args, settings) -> int:
    """Erase one customer; print the erasure; return the exit status."""
    from cli.operators import actor
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact
    from shared.security.vault import Vault
    from shared.services import erasure, merchants

    engine = get_engine(settings.database_url, "worker", settings.db_timeouts_worker)
    vault = Vault.from_settings(settings)

    def erase(uow):
        merchants.require_merchant(uow, args.merchant)
        return erasure.erase_customer(uow, vault, args.merchant, args.customer, actor())

    out = transact(lambda: UnitOfWork(engine), erase)
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
    else:
        print("\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0
