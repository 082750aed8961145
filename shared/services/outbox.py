"""The intake's transactional outbox: new intents waiting for the first queue.

The API only inserts (one transaction, no broker round trip); a trigger
NOTIFYs at commit and the relay hands everything committed so far to the
first stage in one message. The relay publishes inside the transaction that
marks the intents and commits after, so a failed publish unmarks them.
"""

from __future__ import annotations

from sqlalchemy import text

from shared.db.uow import UnitOfWork

CHANNEL = "clearhouse_outbox"


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
