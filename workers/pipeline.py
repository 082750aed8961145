"""Pipeline stages: each runs one use case on a batch and hands on the survivors.

Each pipeline stage is registered twice (``laned_stage``): once for the shared
queues and once for the instant lane, so instant intents never queue behind
the others (shared/domain/lanes.py). Limits, fraud and fees are fused by
default (``FUSED_STAGES``, shared/domain/fusion.py): a task of one of them runs
it and the fused stages after it in the same unit of work.
"""

from __future__ import annotations

from shared.domain import fusion
from shared.services import authorization, bank_refunds
from shared.services.stages import fees, fraud, limits, settlement
from shared.services.stages.common import StageResult
from workers.base import laned_stage, stage, task


def _limits(self, uow, ids):
    return limits.run(uow, ids)


def _fraud(self, uow, ids):
    cards, s = self.runtime.test_cards, self.settings
    return fraud.run(
        uow,
        ids,
        test_cards=cards,
        default_threshold=s.fraud_block_threshold,
        review_band=s.fraud_review_band,
    )


def _fees(self, uow, ids):
    return fees.run(uow, ids)


BODIES = {"limits": _limits, "fraud": _fraud, "fees": _fees}


def run_fused(self, uow, ids) -> StageResult:
    """Run this task's stage, then each stage fused after it, on the survivors."""
    result = StageResult()
    for name in fusion.chain(self.step, self.settings.fused_stages):
        one = BODIES[name](self, uow, ids)
        for field in ("failed", "retry", "settle_now"):
            getattr(result, field).extend(getattr(one, field))
        ids = one.advanced
        if not ids:
            break
    result.advanced = list(ids)
    return result


@laned_stage("limits", then="fraud")
def check_limits(self, uow, ids):
    return run_fused(self, uow, ids)


@laned_stage("fraud", then="fees")
def score_risk(self, uow, ids):
    return run_fused(self, uow, ids)


@laned_stage("fees", then="authorize")
def compute_fees(self, uow, ids):
    return run_fused(self, uow, ids)


@laned_stage("authorize", flow=True)
def authorize_payments(self, ids):
    rt, policy = self.runtime, authorization.Policy.from_settings(self.settings)
    return authorization.authorize_batch(
        rt.uow, ids, rt.acquirer, rt.vault, policy, rt.banks, retry_step=self.step
    )


@stage("refund_bank", flow=True)
def refund_bank_payments(self, ids):
    return bank_refunds.run(self.runtime.uow, self.runtime.banks, ids)


@stage("settle_instant")
def settle_instant(self, uow, ids):
    return StageResult(advanced=settlement.settle(uow, ids, priority="instant"))


@task("clearhouse.settle_window")
def settle_window(self, uow, ids):
    # Windows settle on their own queues; an intent a refund holds waits for the next.
    return len(settlement.settle(uow, ids, skip_locked=True))
