"""Stage 3: compute the fee from the merchant's plan."""

from __future__ import annotations

from shared.db.uow import UnitOfWork
from shared.domain.fees import compute_fee
from shared.domain.intent import Stage
from shared.services.fee_plans import merchant_fee_plans
from shared.services.stages.common import StageResult, advance, claim


def run(uow: UnitOfWork, ids) -> StageResult:
    """Compute the fee of each claimed intent from its merchant's plan."""
    rows = claim(uow, ids, Stage.RISK_SCORED)
    result = StageResult()
    if not rows:
        return result
    plans = merchant_fee_plans(uow, {r.merchant_id for r in rows})
    fees = {
        r.id: {"fee_amount": compute_fee(r.amount, r.currency, r.priority, plans[r.merchant_id])}
        for r in rows
    }
    advance(uow, list(fees), Stage.FEE_COMPUTED, per_row=fees)
    result.advanced = list(fees)
    return result
