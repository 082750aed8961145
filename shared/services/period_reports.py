"""Weekly and monthly reports: the sum of the period's stored daily reports.

Nothing here reads the ledger or the intents again: each figure is the sum of
the daily rows (shared/services/reports.py) of the period's reported days, so a
period equals the sum of its days by construction, and costs one index lookup
per day however busy the days were.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from shared.db.tables import Money
from shared.db.uow import UnitOfWork
from shared.domain import report_periods as rp
from shared.domain.intent import Status

MONEY = ("gross", "fees", "refunds", "net", "settled")

# One statement, so the runs and the sums come from one snapshot (a rerun of a
# day committing in between cannot pair one day's findings with other rows).
# Two grouping sets over the period's runs joined to the merchant's rows of
# those days (the primary key's (report_date, merchant_id) prefix):
# per run (the day, its findings, when it was built), and per currency (the
# sums). GROUPING(r.report_date) is 1 on the per-currency rows.
_COUNTS = ",\n    ".join(
    f"sum(coalesce((d.counts->>'{s.value}')::bigint, 0))::bigint AS count_{s.value}" for s in Status
)
_SUMS = ",\n    ".join(f"sum(d.{m}) AS {m}" for m in MONEY)
_PERIOD = text(f"""
SELECT GROUPING(r.report_date) AS per_currency, r.report_date,
    max(jsonb_array_length(r.discrepancies)) AS discrepancies, max(r.created_at) AS built_at,
    d.currency,
    {_COUNTS},
    {_SUMS}
FROM report_runs r
LEFT JOIN daily_reports d ON d.report_date = r.report_date AND d.merchant_id = :merchant
WHERE r.report_date BETWEEN :first AND :last
GROUP BY GROUPING SETS ((r.report_date), (d.currency))
ORDER BY 1, 2, d.currency
""").columns(**dict.fromkeys(MONEY, Money))


@dataclass(frozen=True)
class Totals:
    currency: str
    counts: dict[str, int]
    gross: int
    fees: int
    refunds: int
    net: int
    settled: int


@dataclass(frozen=True)
class PeriodReport:
    period: rp.Period
    coverage: rp.Coverage
    totals: list[Totals]  # by currency


def summarize(uow: UnitOfWork, merchant_id: str, period: rp.Period) -> PeriodReport | None:
    """The merchant's sums over ``period``'s reported days, or None if no day is reported."""
    params = {"merchant": merchant_id, "first": period.first_day, "last": period.last_day}
    runs, totals = [], []
    for row in uow.conn.execute(_PERIOD, params):
        if not row.per_currency:
            runs.append(rp.DayRun(row.report_date, row.discrepancies, row.built_at))
        elif row.currency is not None:  # (the group of days without rows of this merchant)
            counts = {s.value: row._mapping[f"count_{s.value}"] for s in Status}
            totals.append(Totals(row.currency, counts, *(row._mapping[m] for m in MONEY)))
    if not runs:
        return None
    return PeriodReport(period, rp.coverage(period, runs), totals)
