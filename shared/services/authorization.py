"""The authorize stage as a use case: three units of work around the acquirer's call.

1. hold the funds (committed before anyone is asked for money);
2. ask the acquirer, outside any transaction (it may take its time);
3. record the answers; instant captures settle at once, transient acquirer
   errors are tried again shortly (the attempt count lives on the intent, so
   the bound survives redelivery).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared.config import Settings
from shared.db.uow import UnitOfWork
from shared.services import bank_payments
from shared.services.batches import NewUnit, run_isolated
from shared.services.stages import authorize
from shared.services.stages.common import StageResult


@dataclass(frozen=True)
class Policy:
    hold_ttl_s: int
    max_attempts: int
    retry_base_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(settings.hold_ttl_s, settings.auth_max_attempts, settings.auth_retry_base_s)


def authorize_batch(
    new_uow: NewUnit,
    ids,
    acquirer,
    vault,
    policy: Policy,
    banks=None,
    retry_step: str = "authorize",
) -> StageResult:
    """Authorize ``ids`` (intents at ``fee_computed``); return what became of them.

    ``retry_step``: where transient failures are tried again (the lane the batch runs in).
    """
    held: dict = {}

    def place_holds(uow: UnitOfWork, batch):
        result = authorize.place_holds(uow, batch, hold_ttl_s=policy.hold_ttl_s)
        # Read in this transaction: no unit of work of its own just to read them back.
        held.update((r.id, r) for r in authorize.held(uow, result.advanced))
        return result

    holding = run_isolated(new_uow, place_holds, list(ids))
    rows = [held[i] for i in holding.advanced if i in held]
    if not rows:
        return StageResult(failed=holding.failed)
    # Bank payments are a two-phase commit with two banks, not one acquirer call.
    by_bank = [r for r in rows if r.pm_type == "bank_account"]
    others = [r for r in rows if r.pm_type != "bank_account"]
    answers = authorize.ask_acquirer(others, acquirer, vault)
    if by_bank:
        answers |= bank_payments.ask_banks(new_uow, banks, by_bank)

    def record(uow: UnitOfWork, batch):
        result = authorize.apply(
            uow,
            {i: answers[i] for i in batch},
            max_attempts=policy.max_attempts,
            hold_ttl_s=policy.hold_ttl_s,
        )
        uow.enqueue("settle_instant", result.settle_now)
        countdown = policy.retry_base_s * (1 + random.random())  # jitter
        uow.enqueue(retry_step, result.retry, countdown=countdown)
        return result

    result = run_isolated(new_uow, record, list(answers))
    result.failed = holding.failed + result.failed
    return result
