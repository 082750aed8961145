"""Events: one row per state change, in the same transaction as the change.

Each event also gets a webhook delivery row when the merchant has a webhook
URL; its first attempt is enqueued after commit, retries are scheduled in
the delivery row and dispatched by the scheduler.
"""

from __future__ import annotations

from sqlalchemy import insert, select, text

from shared.db.tables import events, payment_intents
from shared.db.uow import UnitOfWork
from shared.observability import metrics
from shared.services import views
from shared.services.ids import new_id

INTENT_EVENTS = {
    "processing": "payment_intent.processing",
    "requires_capture": "payment_intent.requires_capture",
    "succeeded": "payment_intent.succeeded",
    "failed": "payment_intent.payment_failed",
    "canceled": "payment_intent.canceled",
}
EVENT_TYPES = (*INTENT_EVENTS.values(), "refund.succeeded", "settlement.paid")


def emit(uow: UnitOfWork, items: list[tuple[str, str, str, dict]], request_id=None) -> list[str]:
    """Record events [(merchant_id, type, object_id, data)] and their deliveries."""
    if not items:
        return []
    rows = [
        {
            "id": new_id("evt"),
            "merchant_id": merchant_id,
            "type": type_,
            "object_id": object_id,
            "data": data,
            "request_id": request_id,
        }
        for merchant_id, type_, object_id, data in items
    ]
    uow.conn.execute(insert(events), rows)
    metrics.intent_events(uow, items)
    # A delivery per event whose merchant has a webhook URL, in one statement:
    # the merchant lookup and the insert share a round trip.
    delivered = uow.conn.execute(
        text(
            "INSERT INTO webhook_deliveries (id, event_id, merchant_id, url, next_attempt_at)"
            " SELECT d.id, d.event_id, d.merchant_id, m.webhook_url, now()"
            " FROM unnest(CAST(:ids AS text[]), CAST(:events AS text[]),"
            "             CAST(:merchants AS text[])) AS d(id, event_id, merchant_id)"
            " JOIN merchants m ON m.id = d.merchant_id AND m.webhook_url IS NOT NULL"
            " RETURNING id"
        ),
        {
            "ids": [new_id("whd") for _ in rows],
            "events": [r["id"] for r in rows],
            "merchants": [r["merchant_id"] for r in rows],
        },
    ).scalars()
    uow.enqueue("deliver_webhooks", list(delivered))
    return [r["id"] for r in rows]


def emit_intents(uow: UnitOfWork, ids, request_id=None) -> list[str]:
    """An event for each intent's current status (call after changing it)."""
    ids = list(ids)
    if not ids:
        return []
    rows = uow.conn.execute(select(payment_intents).where(payment_intents.c.id.in_(ids))).all()
    metrics.intents_final(uow, rows)
    return emit(
        uow,
        [(r.merchant_id, INTENT_EVENTS[r.status], r.id, views.intent_json(r)) for r in rows],
        request_id,
    )
