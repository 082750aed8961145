"""Events: one row per state change, in the same transaction as the change.

Each event also gets a webhook delivery row per enabled endpoint of its
merchant that receives its type; the first attempts are enqueued after commit,
retries are scheduled in the delivery rows and dispatched by the scheduler.

A new intent's ``payment_intent.processing`` event is the exception
(``enqueue=False``): the outbox relay, which claims the intent, sends that
event's first deliveries with it (shared/services/outbox.py), so creating an
intent makes no broker round trip in the API. The scheduler's dispatcher
still sends them if the relay is down.
"""

from __future__ import annotations

import json

from sqlalchemy import select, text

from shared.db.tables import payment_intents
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
# A customer's personal data was erased on request (shared/services/erasure.py).
CUSTOMER_ERASED = "customer.erased"
EVENT_TYPES = (
    *INTENT_EVENTS.values(),
    "refund.succeeded",
    "settlement.paid",
    "review.opened",
    CUSTOMER_ERASED,
)

# The events, and one delivery per event and enabled endpoint of its merchant that
# receives its type (``enabled_events`` holds it or "*"), in one statement: one
# round trip whatever the fan-out. The deliveries' ids are made here (md5 of a
# random UUID: 24 hex digits, as shared/services/ids.py makes them), and their
# foreign keys are checked at the statement's end, when the CTE's events exist.
_EMIT = text(
    "WITH e AS ("
    " INSERT INTO events (id, merchant_id, type, object_id, data, request_id)"
    " SELECT id, merchant_id, type, object_id, CAST(data AS jsonb), CAST(:request_id AS text)"
    " FROM unnest(CAST(:ids AS text[]), CAST(:merchants AS text[]), CAST(:types AS text[]),"
    "             CAST(:objects AS text[]), CAST(:data AS text[]))"
    "      AS i(id, merchant_id, type, object_id, data))"
    " INSERT INTO webhook_deliveries (id, event_id, merchant_id, endpoint_id, url, next_attempt_at)"
    " SELECT 'whd_' || substr(md5(CAST(gen_random_uuid() AS text)), 1, 24),"
    "        d.event_id, d.merchant_id, w.id, w.url, now()"
    " FROM unnest(CAST(:ids AS text[]), CAST(:merchants AS text[]), CAST(:types AS text[]))"
    "      AS d(event_id, merchant_id, type)"
    " JOIN webhook_endpoints w ON w.merchant_id = d.merchant_id AND w.deleted_at IS NULL"
    "  AND w.status = 'enabled' AND w.url IS NOT NULL"
    "  AND w.enabled_events && ARRAY['*', d.type]"
    " RETURNING id"
)


def emit(
    uow: UnitOfWork,
    items: list[tuple[str, str, str, dict]],
    request_id=None,
    *,
    enqueue: bool = True,
) -> list[str]:
    """Record events [(merchant_id, type, object_id, data)] and their deliveries.

    ``enqueue=False``: record the deliveries but send none; someone else does
    (the outbox relay, for a new intent's event).
    """
    if not items:
        return []
    event_ids = [new_id("evt") for _ in items]
    merchants = [merchant_id for merchant_id, _, _, _ in items]
    metrics.intent_events(uow, items)
    delivered = uow.conn.execute(
        _EMIT,
        {
            "ids": event_ids,
            "merchants": merchants,
            "types": [type_ for _, type_, _, _ in items],
            "objects": [object_id for _, _, object_id, _ in items],
            "data": [json.dumps(data) for _, _, _, data in items],
            "request_id": request_id,
        },
    ).scalars()
    if enqueue:
        uow.enqueue("deliver_webhooks", list(delivered))
    return event_ids


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
