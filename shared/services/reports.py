"""The daily report per merchant and currency, reconciled and sealed in one run.

Money figures come from the ledger, attributed to a merchant through its
accounts (``merchant:<id>:…``), so batch transfers without an intent count:

- gross: captures posted to the merchant that day;
- fees: fees charged that day, less fees given back with refunds (``fee_refund``);
- refunds: refunds paid back to payers that day;
- net = gross − fees − refunds (the day's change of the merchant's total balance);
- settled: moved from pending to available that day.

Counts are the intents created that day, by their status at report time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db.tables import daily_reports, report_runs
from shared.db.uow import UnitOfWork
from shared.domain.intent import Status
from shared.services import ledger_verify, reconcile, seals

COUNT_COLUMNS = ", ".join(
    f"'{s.value}', count(*) FILTER (WHERE status = '{s.value}')" for s in Status
)
ZERO_COUNTS = ", ".join(f"'{s.value}', 0" for s in Status)

# One INSERT … SELECT: two GROUP BYs over the day's rows, nothing through Python.
_BUILD = f"""
INSERT INTO daily_reports
    (report_date, merchant_id, currency, counts, gross, fees, refunds, net, settled)
WITH owners AS (
    SELECT id, split_part(code, ':', 2) AS merchant_id
    FROM ledger_accounts WHERE code LIKE 'merchant:%'
),
money AS (
    SELECT coalesce(c.merchant_id, d.merchant_id) AS merchant_id, t.currency,
        coalesce(sum(t.amount) FILTER (WHERE t.reason = 'capture'
            AND t.kind = 'post_pending' AND c.id IS NOT NULL), 0) AS gross,
        coalesce(sum(t.amount) FILTER (WHERE t.reason = 'fee' AND d.id IS NOT NULL), 0)
        - coalesce(sum(t.amount) FILTER (WHERE t.reason = 'fee_refund' AND c.id IS NOT NULL), 0)
            AS fees,
        coalesce(sum(t.amount) FILTER (WHERE t.reason = 'refund' AND d.id IS NOT NULL), 0)
            AS refunds,
        coalesce(sum(t.amount) FILTER (WHERE t.reason = 'settlement'), 0) AS settled
    FROM ledger_transfers t
    LEFT JOIN owners d ON d.id = t.debit_account_id
    LEFT JOIN owners c ON c.id = t.credit_account_id
    WHERE t.created_at >= :start AND t.created_at < :end
      AND t.reason IN ('capture', 'fee', 'fee_refund', 'refund', 'settlement')
      AND (d.id IS NOT NULL OR c.id IS NOT NULL)
    GROUP BY 1, 2
),
counts AS (
    -- Per merchant through (merchant_id, created_at): an index range each.
    SELECT i.merchant_id, i.currency, jsonb_build_object({COUNT_COLUMNS}) AS counts
    FROM merchants m CROSS JOIN LATERAL (
        SELECT merchant_id, currency, status FROM payment_intents
        WHERE merchant_id = m.id AND created_at >= :start AND created_at < :end
    ) i
    GROUP BY 1, 2
)
SELECT :day, coalesce(c.merchant_id, m.merchant_id), coalesce(c.currency, m.currency),
    coalesce(c.counts, jsonb_build_object({ZERO_COUNTS})),
    coalesce(m.gross, 0), coalesce(m.fees, 0), coalesce(m.refunds, 0),
    coalesce(m.gross, 0) - coalesce(m.fees, 0) - coalesce(m.refunds, 0), coalesce(m.settled, 0)
FROM counts c FULL JOIN money m ON m.merchant_id = c.merchant_id AND m.currency = c.currency
"""


@dataclass
class RunResult:
    day: date
    rows: int
    discrepancies: list[str]
    sealed: bool
    sealed_days: list[date] = field(default_factory=list)
    duration_ms: int = 0

    @property
    def discrepancy_count(self) -> int:
        """What a metrics exporter records for the run (0: the books reconcile)."""
        return len(self.discrepancies)


def build(uow: UnitOfWork, day: date) -> int:
    """(Re)write the day's report rows; a rerun replaces them. Return the row count."""
    start, end = seals.day_bounds(day)
    uow.conn.execute(daily_reports.delete().where(daily_reports.c.report_date == day))
    return uow.conn.execute(text(_BUILD), {"day": day, "start": start, "end": end}).rowcount


def run_daily(uow: UnitOfWork, day: date, verify_days: int = 2) -> RunResult:
    """Build the report, reconcile the books, seal the ledger up to ``day``; record the run.

    Every seal's link and hash is checked, and the entries of the last
    ``verify_days`` days re-hashed (not those sealed by this very run: they
    were just hashed), so a change made since yesterday's seal is caught the
    next day. ``clearhouse ledger verify`` re-hashes the whole chain.
    """
    began = time.monotonic()
    rows = build(uow, day)
    start, end = seals.day_bounds(day)
    problems = reconcile.discrepancies(uow) + reconcile.day_discrepancies(uow, start, end)
    sealed_days: list[date] = []
    try:
        sealed_days = seals.seal_day(uow, day)
        sealed = True
    except seals.NotSealable as exc:
        # A day still running is reported as it stands, unsealed: not a discrepancy.
        sealed = False
        if seals.day_ended(uow, day):
            problems.append(f"ledger not sealed for {day}: {exc}")
    if sealed:
        since = day - timedelta(days=verify_days - 1)
        problems += ledger_verify.verify(uow, since=since, fresh=set(sealed_days)).problems
    duration_ms = int((time.monotonic() - began) * 1000)
    uow.conn.execute(
        pg_insert(report_runs)
        .values(report_date=day, discrepancies=problems, duration_ms=duration_ms)
        .on_conflict_do_update(
            index_elements=["report_date"],
            set_={"discrepancies": problems, "duration_ms": duration_ms, "created_at": func.now()},
        )
    )
    return RunResult(day, rows, problems, sealed, sealed_days, duration_ms)


def merchant_rows(uow: UnitOfWork, merchant_id: str, day: date):
    """The merchant's rows for ``day``, or None when no report was run for it."""
    ran = uow.conn.execute(
        select(report_runs.c.report_date).where(report_runs.c.report_date == day)
    )
    if ran.first() is None:
        return None
    return uow.conn.execute(
        select(daily_reports)
        .where(daily_reports.c.report_date == day, daily_reports.c.merchant_id == merchant_id)
        .order_by(daily_reports.c.currency)
    ).all()
