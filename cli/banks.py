"""``clearhouse bank account create|fund|show``: set-up of the sandbox banks' accounts.

These talk to the bank processes (BANKS, BANK_TOKEN), not to Postgres; ``clearhouse
merchant set-bank-account`` (also here) names the account a merchant is paid into.
"""

from __future__ import annotations

import json

from cli.args import positive_int

GROUPS = ("bank",)


def add_parsers(sub, merchant_sub) -> None:
    """Add the bank group, and ``merchant set-bank-account`` to the merchant group."""
    b = sub.add_parser("bank", help="sandbox bank accounts").add_subparsers(
        dest="cmd", required=True
    )
    a = b.add_parser("account", help="accounts at a bank").add_subparsers(
        dest="action", required=True
    )
    c = a.add_parser("create", help="open an empty account")
    c.add_argument("--bank", required=True)
    c.add_argument("--owner", required=True)
    c.add_argument("--currency", required=True, type=str.upper)
    c.add_argument("--json", action="store_true", help="one line of JSON")
    f = a.add_parser("fund", help="deposit into an account (minor units)")
    f.add_argument("--bank", required=True)
    f.add_argument("--account", required=True)
    f.add_argument("--amount", required=True, type=positive_int)
    f.add_argument("--json", action="store_true")
    s = a.add_parser("show", help="an account's balance and what prepared debits reserve")
    s.add_argument("--bank", required=True)
    s.add_argument("--account", required=True)
    s.add_argument("--json", action="store_true")
    m = merchant_sub.add_parser(
        "set-bank-account", help="the bank account the merchant's bank payments are credited to"
    )
    m.add_argument("--merchant", required=True)
    m.add_argument("--bank", required=True)
    m.add_argument("--account", required=True)
    m.add_argument("--json", action="store_true")


def _banks(settings, bank: str):
    from shared.connectors.bank import Banks

    banks = Banks.from_settings(settings)
    if bank not in banks.addresses:
        raise ValueError(f"unknown bank {bank!r}; BANKS names {', '.join(banks.addresses)}")
    return banks


def run(args, settings) -> int:
    """Run one bank command; print its result; return the exit status."""
    banks = _banks(settings, args.bank)
    if args.action == "create":
        made = banks.create_account(args.bank, args.owner, args.currency)
        out = {"bank": args.bank, **made}
    elif args.action == "fund":
        out = {"bank": args.bank, **banks.fund(args.bank, args.account, args.amount)}
    else:
        out = {"bank": args.bank, **banks.account(args.bank, args.account)}
    _print(args, out)
    return 0


def set_bank_account(args, settings) -> int:
    """``merchant set-bank-account``: the account must exist at a bank of BANKS."""
    from cli.operators import actor
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact
    from shared.services import merchants

    found = _banks(settings, args.bank).account(args.bank, args.account)
    engine = get_engine(settings.database_url, "worker", settings.db_timeouts_worker)
    out = transact(
        lambda: UnitOfWork(engine),
        lambda uow: merchants.set_bank_account(
            uow, args.merchant, args.bank, found["account"], actor=actor()
        ),
    )
    _print(args, out)
    return 0


def _print(args, out: dict) -> None:
    if args.json:
        print(json.dumps(out, separators=(",", ":")))
    else:
        print("\n".join(f"{k}: {v}" for k, v in out.items()))
