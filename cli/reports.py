"""``clearhouse report daily`` (audited as ``cli:<os user>``) and ``clearhouse ledger verify``."""

from __future__ import annotations

import argparse
import json
from datetime import date

GROUPS = ("report", "ledger")


def _day(text: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def add_parsers(sub) -> None:
    """Add the report and ledger groups to the main parser's subcommands."""
    r = sub.add_parser("report", help="reports").add_subparsers(dest="cmd", required=True)
    d = r.add_parser("daily", help="build (or rebuild) one UTC day's report, reconciled and sealed")
    d.add_argument("--date", required=True, type=_day, help="YYYY-MM-DD (UTC)")
    d.add_argument("--json", action="store_true", help="one line of JSON")
    led = sub.add_parser("ledger", help="the ledger").add_subparsers(dest="cmd", required=True)
    led.add_parser("verify", help="re-check every seal of the hash chain; exit 1 on a problem")


def run(args, settings) -> int:
    """Run one command of these groups; return the exit status."""
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact

    engine = get_engine(settings.database_url, "report", settings.db_timeouts_report)
    if args.group == "ledger":
        with UnitOfWork(engine) as uow:
            return _verify(uow)
    from cli.operators import actor
    from shared.services.audit import Actor
    from shared.services.operator_admin import rerun_daily_report

    # Audited as the OS user, in the report's own transaction.
    who = Actor(actor())
    summary = transact(lambda: UnitOfWork(engine), rerun_daily_report, who, args.date)
    del summary["object"]
    if args.json:
        print(json.dumps(summary, separators=(",", ":")))
        return 0
    for key, value in summary.items():
        if key != "discrepancies":
            print(f"{key}: {value}")
    print(f"discrepancies: {len(summary['discrepancies'])}")
    for problem in summary["discrepancies"]:
        print(f"  {problem}")
    return 0


def _verify(uow) -> int:
    from shared.services.ledger_verify import verify

    v = verify(uow)
    for problem in v.problems:
        print(problem)
    if v.problems:
        return 1
    print(f"OK: {v.seals} seals, {v.entries} entries verified, {v.unsealed} not sealed yet")
    return 0
