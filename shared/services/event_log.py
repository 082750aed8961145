"""The event log as merchants see it: events, webhook deliveries, redelivery (one merchant each)."""

from __future__ import annotations

from sqlalchemy import Table, func, insert, select

from shared.db.tables import events, merchants, webhook_attempts
from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.services import paging
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


def list_deliveries(uow, merchant_id, *, event_id=None, status=None, limit=10, starting_after=None):
    """Newest first, each with its attempts; return (rows, attempts by id, has_more)."""
    where = [wd.c.merchant_id == merchant_id]
    if event_id:
        where.append(wd.c.event_id == event_id)
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


def redeliver(uow: UnitOfWork, merchant_id: str, event_id: str):
    """A new delivery of one of this merchant's events to its current URL."""
    # KEY SHARE: event retention skips an event being redelivered (SKIP LOCKED),
    # or this waits for its deletion and finds nothing, never a dangling delivery.
    event = uow.conn.execute(
        select(events.c.id)
        .where(events.c.id == event_id, events.c.merchant_id == merchant_id)
        .with_for_update(key_share=True)
    ).first()
    if event is None:
        raise NotFound("event", event_id)
    url = uow.conn.execute(
        select(merchants.c.webhook_url).where(merchants.c.id == merchant_id)
    ).scalar()
    if not url:
        raise ServiceError("This merchant has no webhook URL configured.", "webhook_url")
    row = uow.conn.execute(
        insert(wd)
        .values(
            id=new_id("whd"),
            event_id=event_id,
            merchant_id=merchant_id,
            url=url,
            next_attempt_at=func.now(),
        )
        .returning(wd)
    ).one()
    uow.enqueue("deliver_webhooks", [row.id])
    return row


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
