"""The intake's transactional outbox: new intents waiting for the first queue.

The API only inserts (one transaction, no broker round trip); a trigger
NOTIFYs at commit and the relay hands everything committed so far to the
first stage in one message. The relay publishes inside the transaction that
marks the intents and commits after, so a failed publish unmarks them.

The relay also sends the first webhook deliveries of the intents' creation
events (``payment_intent.processing``), one message per batch: the API
records them but does not enqueue them, which would be a broker publish in
every create request. A failed publish unmarks the intents, so the next pass
sends both again; a duplicate delivery message is harmless, since delivery
claims by lease (shared/services/webhooks.py). If the relay is down, the
scheduler's dispatcher sends them after its grace period.
"""

from __future__ import annotations

from sqlalchemy import text

from shared.db.uow import UnitOfWork

CHANNEL = "clearhouse_outbox"
CREATED_EVENT = "payment_intent.processing"

# One statement per batch, through ix_events_object and the deliveries'
# event_id index. Only first attempts not yet made: a delivery already tried
# (or done) is the retry schedule's, not the relay's.
_FIRST_DELIVERIES = text(
    "SELECT d.id FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
    " WHERE e.object_id = ANY(CAST(:ids AS text[])) AND e.type = :type"
    " AND d.status = 'pending' AND d.attempts = 0"
    " ORDER BY d.id"
)


def claim(uow: UnitOfWork, limit: int) -> list[tuple[str, str | None, str]]:
    """Mark up to ``limit`` unsent intents as enqueued; return (id, request_id, priority).

    Instant intents first, then the oldest: an instant payment that arrives
    behind a backlog of unsent ones goes out with the next batch. (Few rows
    are unsent in normal running, so the sort is small; during a backlog it
    is a top-N sort over the outbox's partial index.)
    """
    return [
        (r.id, r.request_id, r.priority)
        for r in uow.conn.execute(
            text(
                "UPDATE payment_intents SET enqueued_at = now() WHERE id IN ("
                " SELECT id FROM payment_intents WHERE enqueued_at IS NULL"
                " ORDER BY priority = 'instant' DESC, created_at LIMIT :n"
                " FOR UPDATE SKIP LOCKED)"
                " RETURNING id, request_id, priority"
            ),
            {"n": limit},
        )
    ]


def first_deliveries(uow: UnitOfWork, intent_ids: list[str]) -> list[str]:
    """The pending, untried webhook deliveries of these intents' creation events."""
    if not intent_ids:
        return []
    return list(
        uow.conn.execute(
            _FIRST_DELIVERIES, {"ids": list(intent_ids), "type": CREATED_EVENT}
        ).scalars()
    )
