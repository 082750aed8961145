"""Settlement: move what is left of the net from the merchant's pending to available.

``instant`` intents settle right after capture on their own queue; ``standard``
and ``economy`` wait for their window, whose beat job lists what is due and
hands it out in batches (``due`` then ``settle``).
"""

from __future__ import annotations

from sqlalchemy import select, tuple_

from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain.intent import Status
from shared.services import settlements


def settle(uow: UnitOfWork, ids, priority: str | None = None, skip_locked=False) -> list[str]:
    """Settle succeeded, unsettled intents among ``ids``; return those settled.

    Compare-and-set on ``settlement_status`` under a row lock: a duplicate
    message or a second window run finds nothing left to do. ``skip_locked``
    (windows) leaves an intent a refund is holding to the next window rather
    than wait for it.
    """
    query = (
        select(pi)
        .where(
            pi.c.id.in_(list(ids)),
            pi.c.status == Status.SUCCEEDED,
            pi.c.settlement_status == "pending",
        )
        .order_by(pi.c.id)
        .with_for_update(skip_locked=skip_locked)
    )
    if priority:
        query = query.where(pi.c.priority == priority)
    rows = uow.conn.execute(query).all()
    settlements.pay_out(uow, rows)
    return [r.id for r in rows]


def due(uow: UnitOfWork, priority: str, after=None, limit: int = 10_000) -> list[tuple]:
    """Unsettled succeeded intents of a priority as (merchant, currency, id), in that order.

    Ordered so each batch holds few merchants (few settlement objects); the
    last key is the cursor for a follow-up run when ``limit`` was reached.
    """
    key = tuple_(pi.c.merchant_id, pi.c.currency, pi.c.id)
    query = select(pi.c.merchant_id, pi.c.currency, pi.c.id).where(
        pi.c.status == Status.SUCCEEDED,
        pi.c.settlement_status == "pending",
        pi.c.priority == priority,
    )
    if after:
        query = query.where(key > tuple_(*after))
    rows = uow.conn.execute(
        query.order_by(pi.c.merchant_id, pi.c.currency, pi.c.id).limit(limit)
    ).all()
    return [tuple(r) for r in rows]
