"""Periodic jobs: re-drive, expire holds, open settlement windows, send due webhooks, report.

Retention (card data, events, attempts, idempotency keys): shared/services/retention.py.
"""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select, text

from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.domain.intent import Stage, Status
from shared.domain.lanes import by_lane
from shared.observability import metrics
from shared.services import outcomes, reports, webhooks
from shared.services.stages import settlement
from shared.services.stages.common import now

log = logging.getLogger(__name__)
BATCH = 1000
# Ids a settlement window lists per run; a bigger backlog goes on in another run.
SCAN_LIMIT = 10_000
# Webhook deliveries sent per run; the next run takes the rest.
DUE_WEBHOOKS_LIMIT = 5000
# The step that takes an intent waiting at each stage.
STAGE_STEP = {
    Stage.RECEIVED: "limits",
    Stage.LIMITS_CHECKED: "fraud",
    Stage.RISK_SCORED: "fees",
    Stage.FEE_COMPUTED: "authorize",
}


def redrive(uow: UnitOfWork, older_than_s: int) -> dict[str, int]:
    """Send intents that stopped advancing (and lost instant settlements) on again."""
    stuck = _stuck(uow, older_than_s)
    by_stage: dict[str, list] = {}
    for stage, intent_id, priority in stuck:
        by_stage.setdefault(stage, []).append((intent_id, priority))
    for stage, rows in by_stage.items():
        log.info("re-driving %d intents stuck at %s", len(rows), stage)
        # Each to its lane's step: an instant intent stays in the instant lane.
        for step, ids in by_lane(STAGE_STEP[stage], rows).items():
            uow.enqueue(step, ids)
    unsettled = unsettled_instant(uow, older_than_s)
    uow.enqueue("settle_instant", unsettled)
    return {"stuck": len(stuck), "unsettled": len(unsettled)}


# Re-drives back off: an intent re-driven once is sent again only after it has
# waited as long again since (10 s, 20 s, 40 s, ... after it entered its stage,
# for REDRIVE_AFTER_S=10), and at least every REDRIVE_BACKOFF_CAP x REDRIVE_AFTER_S.
# A lost message is still found within REDRIVE_AFTER_S; a stage that merely lags
# gets a few copies of each intent rather than one per pass, which had fed the
# lag it answered (the migration 0008's docstring).
REDRIVE_BACKOFF_CAP = 4
_DUE = (
    "{since} < now() - make_interval(secs => :s)"
    " AND (redriven_at IS NULL OR redriven_at < {since}"
    "  OR now() - redriven_at >= LEAST("
    "   GREATEST(redriven_at - {since}, make_interval(secs => :s)),"
    "   make_interval(secs => :s * :cap)))"
)


def _due_for_redrive(uow: UnitOfWork, where: str, since: str, older_than_s: int) -> list:
    """Mark and return (stage, id, priority) of the intents due for a re-drive, oldest first."""
    due = _DUE.format(since=since)
    return uow.conn.execute(
        text(
            "UPDATE payment_intents SET redriven_at = now() WHERE id IN ("
            f" SELECT id FROM payment_intents WHERE {where} AND {due}"
            f" ORDER BY {since} LIMIT :n FOR UPDATE SKIP LOCKED)"
            " RETURNING stage, id, priority"
        ),
        {"s": older_than_s, "cap": REDRIVE_BACKOFF_CAP, "n": BATCH * 10},
    ).all()


def stuck_intents(uow: UnitOfWork, older_than_s: int) -> dict[str, list[str]]:
    """Intents that stopped advancing, grouped by the stage they wait at.

    Postgres is the truth: whatever Redis lost (a flush, a restart without
    persistence, a publish that failed after commit) shows up here. A row a
    stage holds locked is advancing: it is left for the next pass.
    """
    out: dict[str, list[str]] = {}
    for stage, intent_id, _ in _stuck(uow, older_than_s):
        out.setdefault(stage, []).append(intent_id)
    return out


def _stuck(uow: UnitOfWork, older_than_s: int) -> list:
    return _due_for_redrive(uow, "status = 'processing'", "stage_changed_at", older_than_s)


def unsettled_instant(uow: UnitOfWork, older_than_s: int) -> list[str]:
    """Instant intents that succeeded but whose settlement message was lost."""
    where = (
        "status = 'succeeded' AND priority = 'instant' AND settlement_status = 'pending'"
        " AND finalized_at IS NOT NULL"
    )
    return [i for _, i, _ in _due_for_redrive(uow, where, "finalized_at", older_than_s)]


def expire_holds(uow: UnitOfWork) -> list[str]:
    """Void holds past their expiry; the intents become canceled (expired)."""
    rows = uow.conn.execute(
        select(pi)
        .where(pi.c.status == Status.REQUIRES_CAPTURE, pi.c.hold_expires_at <= now(uow))
        .order_by(pi.c.id)
        .limit(BATCH)
        # A capture in flight holds the row: skip it, the next run will see.
        .with_for_update(skip_locked=True)
    ).all()
    outcomes.cancel(uow, rows, "expired", L.EXPIRE_PENDING)
    if rows:
        log.info("expired %d holds", len(rows))
    return [r.id for r in rows]


def open_window(uow: UnitOfWork, priority: str, cursor=None, limit: int = SCAN_LIMIT) -> int:
    """Send every due intent of ``priority`` to its window's settlement queue in batches.

    Only ids are read here, so a big window is many small settle messages,
    never one long task; past ``limit`` the scan goes on in a run of its own
    (``cursor``: a one-item list holding the last key listed).
    """
    due = settlement.due(uow, priority, cursor[0] if cursor else None, limit)
    ids = [intent_id for _, _, intent_id in due]
    uow.enqueue(f"settle_{priority}", ids)
    if len(due) == limit:
        uow.enqueue(f"scan_{priority}", [list(due[-1])])
    if ids:
        log.info("%s window: %d intents sent to settle", priority, len(ids))
    return len(ids)


def send_due_webhooks(uow: UnitOfWork) -> int:
    """Send deliveries whose attempt is due (retries, and first attempts that were lost)."""
    ids = webhooks.due(uow, DUE_WEBHOOKS_LIMIT)
    uow.enqueue("deliver_webhooks", ids)
    if ids:
        log.info("dispatched %d due webhook deliveries", len(ids))
    return len(ids)


def daily_report(uow: UnitOfWork, day: date) -> dict:
    """Build ``day``'s report, reconcile and seal it; the discrepancy gauge follows the commit."""
    result = reports.run_daily(uow, day)
    uow.on_commit(lambda: metrics.reconciliation_discrepancies(result.discrepancy_count))
    if result.discrepancies:
        log.error(
            "daily report %s: %d discrepancies, first: %s",
            day,
            result.discrepancy_count,
            result.discrepancies[0],
        )
    return {
        "date": day.isoformat(),
        "rows": result.rows,
        "discrepancies": result.discrepancy_count,
        "sealed": result.sealed,
        "duration_ms": result.duration_ms,
    }
