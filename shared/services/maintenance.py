"""Periodic jobs: re-drive stuck intents, expire holds, prune idempotency keys."""

from __future__ import annotations

import logging

from sqlalchemy import select, text

from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.domain.intent import Status
from shared.services import idempotency, outcomes
from shared.services.stages.common import now

log = logging.getLogger(__name__)
BATCH = 1000


def stuck_intents(uow: UnitOfWork, older_than_s: int) -> dict[str, list[str]]:
    """Intents that stopped advancing, grouped by the stage they wait at.

    Postgres is the truth: whatever Redis lost (a flush, a restart without
    persistence, a publish that failed after commit) shows up here.
    """
    rows = uow.conn.execute(
        text(
            "SELECT stage, id FROM payment_intents WHERE status = 'processing'"
            " AND stage_changed_at < now() - make_interval(secs => :s)"
            " ORDER BY stage_changed_at LIMIT :n"
        ),
        {"s": older_than_s, "n": BATCH * 10},
    )
    out: dict[str, list[str]] = {}
    for stage, intent_id in rows:
        out.setdefault(stage, []).append(intent_id)
    return out


def unsettled_instant(uow: UnitOfWork, older_than_s: int) -> list[str]:
    """Instant intents that succeeded but whose settlement message was lost."""
    return list(
        uow.conn.execute(
            text(
                "SELECT id FROM payment_intents WHERE status = 'succeeded'"
                " AND priority = 'instant' AND settlement_status = 'pending'"
                " AND finalized_at < now() - make_interval(secs => :s) LIMIT :n"
            ),
            {"s": older_than_s, "n": BATCH * 10},
        ).scalars()
    )


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
    return [r.id for r in rows]


def prune_idempotency_keys(uow: UnitOfWork, retention_h: int) -> int:
    """Delete idempotency keys past the retention (Settings keeps it >= 24 h)."""
    return idempotency.prune(uow, retention_h)
