"""Pipeline stages: each runs one use case on a batch and hands on the survivors.

Each pipeline stage is registered twice (``laned_stage``): once for the shared
queues and once for the instant lane, so instant intents never queue behind
the others (shared/domain/lanes.py). The four are fused by default
(``FUSED_STAGES``, shared/domain/fusion.py): a task of one of them runs it and
the fused stages after it, limits, fraud and fees in one unit of work, then
authorize's own three.
"""

from __future__ import annotations

from shared.db.faults import is_transient
from shared.domain import fusion
from shared.services import authorization, bank_refunds
from shared.services.batches import run_isolated
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


def run_stages(self, uow, ids, names) -> StageResult:
    """Run ``names`` one after the other in ``uow``, each on the previous one's survivors."""
    result = StageResult()
    for name in names:
        one = BODIES[name](self, uow, ids)
        result.absorb(one, advanced=False)
        ids = one.advanced
        if not ids:
            break
    result.advanced = list(ids)
    return result


def run_fused(self, ids) -> StageResult:
    """This task's stage and the stages fused after it (shared/domain/fusion.py)."""
    run = fusion.chain(self.step, self.settings.fused_stages)
    ahead = tuple(name for name in run if name != fusion.AUTHORIZE)
    result = StageResult(advanced=list(ids))
    units = fusion.units(ahead)
    for n, unit in enumerate(units):
        last = n == len(units) - 1
        then = fusion.then(self.step, self.then, self.settings.fused_stages) if last else None

        def stages(uow, batch, _unit=unit):
            return run_stages(self, uow, batch, _unit)

        try:
            one = run_isolated(self._new_uow, stages, result.advanced, then)
        except Exception as exc:
            if not n or not is_transient(exc):
                raise
            # The units before committed: retry from this unit's first stage, in this lane.
            self.put_back(result.advanced, exc, step=fusion.in_lane(self.step, unit[0]))
            return result
        one.failed = result.failed + one.failed
        result = one
        if not result.advanced:
            break
    if run[-1] != fusion.AUTHORIZE or not result.advanced:
        return result
    authorize_step = fusion.in_lane(self.step, fusion.AUTHORIZE)
    rt, policy = self.runtime, authorization.Policy.from_settings(self.settings)
    try:
        authorized = authorization.authorize_batch(
            rt.uow,
            result.advanced,
            rt.acquirer,
            rt.vault,
            policy,
            rt.banks,
            retry_step=authorize_step,
        )
    except Exception as exc:
        if not ahead or not is_transient(exc):
            raise
        # The stages ahead committed: only authorize's part is retried, from its queue.
        self.put_back(result.advanced, exc, step=authorize_step)
        return result
    authorized.failed = result.failed + authorized.failed
    return authorized


# Flow tasks (``body(self, ids)``): each opens its units of work through run_fused.
@laned_stage("limits", then="fraud", flow=True)
def check_limits(self, ids):
    return run_fused(self, ids)


@laned_stage("fraud", then="fees", flow=True)
def score_risk(self, ids):
    return run_fused(self, ids)


@laned_stage("fees", then="authorize", flow=True)
def compute_fees(self, ids):
    return run_fused(self, ids)


@laned_stage("authorize", flow=True)
def authorize_payments(self, ids):
    return run_fused(self, ids)


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
