"""Reading a test's own webhook deliveries and attempts back from Postgres."""

from __future__ import annotations

from sqlalchemy import select

from shared.db.tables import webhook_attempts
from shared.db.tables import webhook_deliveries as wd


def deliveries_of(engine, merchant_id):
    """Every webhook delivery of ``merchant_id``."""
    with engine.connect() as conn:
        return conn.execute(select(wd).where(wd.c.merchant_id == merchant_id)).all()


def attempts_of(engine, delivery_id):
    """The attempts of one delivery, first to last."""
    with engine.connect() as conn:
        return conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id == delivery_id)
            .order_by(webhook_attempts.c.attempt)
        ).all()
