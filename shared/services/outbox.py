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


def claim(uow: UnitOfWork, limit: int) -> list[tuple[str, str | None]]:
    """Mark up to ``limit`` unsent intents as enqueued; return (id, request_id) pairs."""
    return [
        (r.id, r.request_id)
        for r in uow.conn.execute(
            text(
                "UPDATE payment_intents SET enqueued_at = now() WHERE id IN ("
                " SELECT id FROM payment_intents WHERE enqueued_at IS NULL"
                " ORDER BY created_at LIMIT :n FOR UPDATE SKIP LOCKED)"
                " RETURNING id, request_id"
            ),
            {"n": limit},
        )
    ]
