"""Pipeline tasks: thin wrappers that run one stage and hand on the survivors."""

from __future__ import annotations

import functools
import logging
import random

from shared.config import get_settings
from shared.services.stages import authorize, fees, fraud, limits, settlement
from workers import runtime
from workers.base import batch_task, run_batch
from workers.dispatch import dispatch

log = logging.getLogger(__name__)
settings = get_settings()


@batch_task("clearhouse.limits", "limits")
def check_limits(ids):
    dispatch("fraud", run_batch(limits.run, ids).advanced)


@batch_task("clearhouse.fraud", "fraud")
def score_risk(ids):
    step = functools.partial(
        fraud.run,
        fraud_fingerprints=runtime.fraud_fingerprints(),
        default_threshold=settings.fraud_block_threshold,
    )
    step.__name__ = "fraud"
    dispatch("fees", run_batch(step, ids).advanced)


@batch_task("clearhouse.fees", "fees")
def compute_fees(ids):
    dispatch("authorize", run_batch(fees.run, ids).advanced)


@batch_task("clearhouse.authorize", "authorize")
def authorize_payments(ids):
    hold = functools.partial(authorize.place_holds, hold_ttl_s=settings.hold_ttl_s)
    hold.__name__ = "place_holds"
    ready = run_batch(hold, ids).advanced
    if not ready:
        return
    with runtime.uow() as uow:
        rows = authorize.held(uow, ready)
    # Outside any transaction: the acquirer may take its time.
    answers = authorize.ask_acquirer(rows, runtime.acquirer(), runtime.vault())

    def record(conn, batch):
        return authorize.apply(
            conn,
            {i: answers[i] for i in batch},
            max_attempts=settings.auth_max_attempts,
            hold_ttl_s=settings.hold_ttl_s,
        )

    record.__name__ = "authorize"
    result = run_batch(record, list(answers))
    dispatch("settle_instant", result.settle_now)
    if result.retry:
        # Transient acquirer errors: try again shortly, with jitter. The
        # attempt count lives on the intent, so the bound survives redelivery.
        countdown = settings.auth_retry_base_s * (1 + random.random())
        dispatch("authorize", result.retry, countdown=countdown)


@batch_task("clearhouse.settle_instant", "settle_instant")
def settle_instant(ids):
    with runtime.uow() as uow:
        settlement.settle(uow, ids, priority="instant")
        uow.commit()
