"""Merchants' fee plans, read for the fee stage and for manual captures."""

from __future__ import annotations

from sqlalchemy import select

from shared.db.tables import merchants
from shared.db.uow import UnitOfWork
from shared.domain.fees import FeePlan, plan_from_json


def merchant_fee_plans(uow: UnitOfWork, merchant_ids) -> dict[str, FeePlan]:
    """Fee plan per merchant (the default plan where none is set)."""
    rows = uow.conn.execute(
        select(merchants.c.id, merchants.c.fee_plan).where(merchants.c.id.in_(list(merchant_ids)))
    )
    return {m.id: plan_from_json(m.fee_plan) for m in rows}
