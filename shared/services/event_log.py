"""The event log as merchants see it: events, webhook deliveries, redelivery (one merchant each)."""

from __future__ import annotations

from sqlalchemy import Table, func, insert, select

from shared.db.tables import events, webhook_attempts
from shared.db.tables import webhook_deliveries as wd
from shared.db.tables import webhook_endpoints as we
from shared.db.uow import UnitOfWork
from shared.domain.webhook_endpoints import receives
from shared.services import paging, webhook_endpoints
from shared.services.errors import NotFound, ServiceError
from shared.services.ids import new_id

DELIVERY_STATUSES = ("pending", "succeeded", "failed")


def get_event(uow: UnitOfWork, merchant_id: str, event_id: str):
    """One event of this merchant; NotFound (never another merchant's)."""
    row = uow.conn.execute(
        select(events).where(events.c.id == event_id, events.c.merchant_id == merchant_id)
    ).first()
    if row is None:
        raise NotFound("event", event_id)
    return row


def list_events(uow, merchant_id, *, type=None, limit=10, starting_after=None):
    """Newest first; return (rows, has_more)."""
    where = [events.c.merchant_id == merchant_id]
    if type:
        where.append(events.c.type == type)
    return _page(uow, events, "event", merchant_id, where, limit, starting_after)


def list_deliveries(
    uow, merchant_id, *, event_id=None, endpoint=None, status=None, limit=10, starting_after=None
):
    """Newest first, each with its attempts; return (rows, attempts by id, has_more)."""
    where = [wd.c.merchant_id == merchant_id]
    if event_id:
        where.append(wd.c.event_id == event_id)
    if endpoint:
        where.append(wd.c.endpoint_id == endpoint)
    if status:
        where.append(wd.c.status == status)
    rows, has_more = _page(uow, wd, "webhook_delivery", merchant_id, where, limit, starting_after)
    attempts: dict[str, list] = {r.id: [] for r in rows}
    if rows:
        found = uow.conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id.in_(list(attempts)))
            .order_by(webhook_attempts.c.delivery_id, webhook_attempts.c.attempt)
        )
        for a in found:
            attempts[a.delivery_id].append(a)
    return rows, attempts, has_more


def redeliver(uow: UnitOfWork, merchant_id: str, event_id: str, endpoint_id: str | None = None):
    """A new delivery of one of this merchant's events, to one of its enabled endpoints.

    ``endpoint_id`` names it; without one, the only enabled endpoint that
    receives the event's type (several: name one, as Stripe's resend asks).
    """
    # KEY SHARE: event retention skips an event being redelivered (SKIP LOCKED),
    # or this waits for its deletion and finds nothing, never a dangling delivery.
    event = uow.conn.execute(
        select(events.c.id, events.c.type)
        .where(events.c.id == event_id, events.c.merchant_id == merchant_id)
        .with_for_update(key_share=True)
    ).first()
    if event is None:
        raise NotFound("event", event_id)
    if endpoint_id is not None:
        target = webhook_endpoints.get(uow, merchant_id, endpoint_id, param="endpoint")
        if target.status != "enabled" or not target.url:
            state = "has no URL" if target.status == "enabled" else "is disabled"
            raise ServiceError(f"Webhook endpoint {endpoint_id} {state}.", "endpoint")
    else:
        target = _only_receiver(uow, merchant_id, event.type)
    row = uow.conn.execute(
        insert(wd)
        .values(
            id=new_id("whd"),
            event_id=event_id,
            merchant_id=merchant_id,
            endpoint_id=target.id,
            url=target.url,
            next_attempt_at=func.now(),
        )
        .returning(wd)
    ).one()
    uow.enqueue("deliver_webhooks", [row.id])
    return row


def _only_receiver(uow: UnitOfWork, merchant_id: str, event_type: str):
    rows = uow.conn.execute(
        select(we).where(
            we.c.merchant_id == merchant_id,
            we.c.deleted_at.is_(None),
            we.c.status == "enabled",
            we.c.url.is_not(None),
        )
    ).all()
    receivers = [r for r in rows if receives(r.enabled_events, event_type)]
    if not receivers:
        raise ServiceError(
            f"No enabled webhook endpoint of this merchant receives {event_type} events.",
            "endpoint",
        )
    if len(receivers) > 1:
        raise ServiceError(
            f"{len(receivers)} webhook endpoints receive {event_type} events:"
            " name one with `endpoint`.",
            "endpoint",
        )
    return receivers[0]


def _page(uow, table: Table, kind: str, merchant_id, where, limit, starting_after):
    return paging.newest_first(
        uow,
        table,
        where,
        kind=kind,
        limit=limit,
        starting_after=starting_after,
        scope=(table.c.merchant_id == merchant_id,),
    )
