"""The daily report job: yesterday's report, reconciliation and ledger seal (00:05 UTC)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from shared.observability import metrics
from shared.services import reports
from workers import runtime
from workers.base import stage_task

log = logging.getLogger(__name__)


# Its work grows with the day's volume (5–10 s for 100,000 intents): the
# default 60/90 s limits would kill a busy day's report half-way, for nothing.
@stage_task(
    "clearhouse.scheduler.daily_report",
    queue="maintenance",
    soft_time_limit=1800,
    time_limit=1900,
)
def daily_report(self, day: str | None = None):
    report_day = date.fromisoformat(day) if day else datetime.now(UTC).date() - timedelta(days=1)
    with runtime.uow("report") as uow:
        result = reports.run_daily(uow, report_day)
        uow.commit()
    metrics.reconciliation_discrepancies(result.discrepancy_count)
    if result.discrepancies:
        log.error(
            "daily report %s: %d discrepancies, first: %s",
            report_day,
            result.discrepancy_count,
            result.discrepancies[0],
        )
    return {
        "date": report_day.isoformat(),
        "rows": result.rows,
        "discrepancies": result.discrepancy_count,
        "sealed": result.sealed,
        "duration_ms": result.duration_ms,
    }
