"""After the faults: drain, then check every invariant against Postgres."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from tests.support.units import bound

FINAL = ("succeeded", "failed", "canceled", "requires_capture")


def accepted_ids(conn, load) -> set[str]:
    """Every intent a client was told about, and any whose answer was lost on the way."""
    told = {o.intent_id for o in load.outcomes if o.intent_id}
    in_db = set(
        conn.execute(text("SELECT id FROM payment_intents WHERE metadata ? 'chaos_key'")).scalars()
    )
    return told | in_db


def not_final(conn, ids: set[str]) -> int:
    """How many of ``ids`` are not final (yet)."""
    return conn.execute(
        text("SELECT count(*) FROM payment_intents WHERE id = ANY(:ids) AND status <> ALL(:final)"),
        {"ids": list(ids), "final": list(FINAL)},
    ).scalar_one()


def wait_final(engine, ids: set[str], deadline: float) -> tuple[list[str], list[str]]:
    """Poll until every intent is final or the deadline passes: (stuck ids, lost ids).

    Lost: a client was told the intent was accepted, and Postgres has no row.
    """
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, status FROM payment_intents WHERE id = ANY(:ids)"),
                {"ids": list(ids)},
            ).all()
        status = dict(rows)
        stuck = sorted(i for i, s in status.items() if s not in FINAL)
        lost = sorted(set(ids) - set(status))
        if not (stuck or lost) or time.time() > deadline:
            return stuck, lost
        time.sleep(1)


def wait_delivered(engine, receiver, deadline: float) -> list[str]:
    """Poll until every event reached the receiver with a valid signature."""
    while True:
        with engine.connect() as conn:
            events = set(conn.execute(text("SELECT id FROM events")).scalars())
        missing = sorted(events - set(receiver.ids()))
        if not missing or time.time() > deadline:
            return missing
        time.sleep(1)


def money(conn) -> dict:
    from shared.services import reports
    from shared.services.reconcile import discrepancies

    dup = conn.execute(
        text(
            "SELECT count(*) FROM (SELECT metadata->>'chaos_key' FROM payment_intents"
            " WHERE metadata ? 'chaos_key' GROUP BY 1 HAVING count(*) > 1) d"
        )
    ).scalar_one()
    double = conn.execute(
        text(
            "SELECT count(*) FROM (SELECT intent_id FROM ledger_transfers"
            " WHERE reason = 'capture' GROUP BY intent_id HAVING count(*) > 1) d"
        )
    ).scalar_one()
    over = conn.execute(
        text("SELECT count(*) FROM payment_intents WHERE amount_received > amount")
    ).scalar_one()
    processing_errors = conn.execute(
        text("SELECT count(*) FROM payment_intents WHERE failure_code = 'processing_error'")
    ).scalar_one()
    problems = discrepancies(bound(conn))
    report = reports.run_daily(bound(conn), datetime.now(UTC).date())
    statuses = dict(
        conn.execute(text("SELECT status, count(*) FROM payment_intents GROUP BY 1")).all()
    )
    return {
        "duplicate_intents": dup,
        "double_captures": double,
        "over_received": over,
        "processing_errors": processing_errors,
        "discrepancies": len(problems) + report.discrepancy_count,
        "discrepancy_samples": (problems + list(report.discrepancies))[:5],
        "statuses": statuses,
    }


def ledger_verify(env: dict) -> int:
    cli = str(Path(sys.executable).parent / "clearhouse")
    return subprocess.run([cli, "ledger", "verify"], env=env, capture_output=True).returncode


def http_errors(load, faults, grace_s: float = 3.0) -> tuple[dict, list[str]]:
    """Errors (5xx and connection errors) by the fault whose window they fell in."""
    by_fault: dict[str, Counter] = {}
    breaches = []
    for a in load.answers:
        if a.status is not None and a.status < 500:
            continue
        # Faults may overlap (the receiver is down for 30 s): an answer inside
        # the Postgres outage belongs to it, whatever else was going on.
        inside = [f.name for f in faults if f.started - 0.5 <= a.at <= f.ended + grace_s]
        label = "none"
        if inside:
            label = "postgres_restart" if "postgres_restart" in inside else inside[0]
        what = f"connection:{a.code}" if a.status is None else str(a.status)
        by_fault.setdefault(label, Counter())[what] += 1
        if a.status is None:
            continue  # the client retries; a killed API answers nothing
        if a.status != 503 or label != "postgres_restart":
            breaches.append(f"{what} ({a.code}) during {label}")
    return {k: dict(v) for k, v in by_fault.items()}, breaches


def recovery(engine, faults) -> dict:
    """Per fault: seconds from its end until every intent it could touch was final."""
    out = {}
    with engine.connect() as conn:
        for f in faults:
            last = conn.execute(
                text(
                    "SELECT max(extract(epoch FROM finalized_at)) FROM payment_intents"
                    " WHERE created_at BETWEEN to_timestamp(:a) AND to_timestamp(:b)"
                ),
                {"a": f.started - 5, "b": f.ended},
            ).scalar()
            out[f.name] = round(max(float(last) - f.ended, 0.0), 1) if last else None
    return out
