"""``clearhouse report daily`` (audited as ``cli:<os user>``), ``clearhouse ledger verify``
(``--anchors``: against the chain too) and ``clearhouse ledger anchor``."""

from __future__ import annotations

import argparse
import json
import sys
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
    v = led.add_parser("verify", help="re-check every seal of the hash chain; exit 1 on a problem")
    v.add_argument(
        "--anchors",
        action="store_true",
        help="also check each seal against its anchor on the chain (ANCHOR_*); exit 2 when the"
        " chain cannot be used",
    )
    v.add_argument("--json", action="store_true", help="one line of JSON")
    a = led.add_parser("anchor", help="send unanchored seals to the chain, record mined ones")
    a.add_argument("--json", action="store_true", help="one line of JSON")


def run(args, settings) -> int:
    """Run one command of these groups; return the exit status."""
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork, transact

    engine = get_engine(settings.database_url, "report", settings.db_timeouts_report)
    if args.group == "ledger":
        from shared.connectors.chain import ChainError

        try:
            if args.cmd == "anchor":
                return _anchor(engine, settings, args.json)
            with UnitOfWork(engine) as uow:
                return _verify(uow, settings, args.anchors, args.json)
        except ChainError as exc:
            print(f"clearhouse: error: {exc}", file=sys.stderr)
            return 2
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


def _verify(uow, settings, with_anchors: bool, as_json: bool) -> int:
    from shared.services.ledger_verify import verify

    # The chain first: a node that cannot be used fails before the long scan.
    chain = _chain(settings) if with_anchors else None
    v = verify(uow)
    out = {"ok": not v.problems, "seals": v.seals, "entries": v.entries, "unsealed": v.unsealed}
    out["problems"] = list(v.problems)
    if chain is not None:
        from shared.services.anchoring import verify_anchors

        a = verify_anchors(uow, chain)
        first = a.first_difference
        out |= {
            "ok": out["ok"] and not a.problems,
            "anchored": a.anchored,
            "unanchored": [d.isoformat() for d in a.unanchored],
            "first_difference": first.isoformat() if first else None,
        }
        out["problems"] += a.problems
    if as_json:
        print(json.dumps(out, separators=(",", ":")))
        return 0 if out["ok"] else 1
    for problem in out["problems"]:
        print(problem)
    if chain is not None and out["unanchored"]:
        print(f"not anchored yet: {', '.join(out['unanchored'])}")
    if not out["ok"]:
        if chain is not None and out["first_difference"]:
            print(f"FAILED: the first seal that differs from its anchor is {first}")
        return 1
    line = f"OK: {v.seals} seals, {v.entries} entries verified, {v.unsealed} not sealed yet"
    if chain is not None:
        line += f"; {out['anchored']} of {v.seals} anchored, each matching chain {chain.chain_id}"
    print(line)
    return 0


def _anchor(engine, settings, as_json: bool) -> int:
    from cli.operators import actor
    from shared.db.uow import UnitOfWork, transact
    from shared.services.anchoring import anchor_as
    from shared.services.audit import Actor

    chain = _chain(settings)
    # Audited as the OS user, in the run's own transaction (when it did anything).
    step = transact(lambda: UnitOfWork(engine), anchor_as, chain, Actor(actor()))
    out = {k: [d.isoformat() for d in getattr(step, k)] for k in ("sent", "resent", "mined")}
    if as_json:
        print(json.dumps(out | {"busy": step.busy}, separators=(",", ":")))
    elif step.busy:
        print("another anchoring run holds the lock; nothing done")
    else:
        for key, days in out.items():
            print(f"{key}: {', '.join(days) or '-'}")
    return 0


def _chain(settings):
    from shared.connectors.chain import AnchorChain

    return AnchorChain.from_settings(settings)
