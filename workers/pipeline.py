"""Pipeline tasks: thin wrappers that run one stage and hand on the survivors."""

from __future__ import annotations

import functools
import logging
import random

from celery_batches import Batches

from shared.config import get_settings
from shared.services.stages import authorize, fees, fraud, limits, settlement
from workers import runtime
from workers.base import is_transient, run_batch
from workers.celery_app import app
from workers.dispatch import dispatch

log = logging.getLogger(__name__)
settings = get_settings()


def batch_task(name: str, step: str):
    """Declare a stage task that gathers its messages (lists of ids) into batches.

    celery-batches flushes at ``batch_max`` ids or every ``batch_interval_ms``:
    light load sees batches of one within milliseconds, heavy load amortizes
    one transaction and one onward message over many intents. Messages are
    acked after the flush (acks_late). Batches has no autoretry, so transient
    errors put the ids back on the queue themselves (re-drive is the backstop).
    """

    def decorate(handle):
        @app.task(
            base=Batches,
            name=name,
            acks_late=True,
            flush_every=settings.batch_max,
            flush_interval=settings.batch_interval_ms / 1000,
        )
        def task(requests):
            ids = list(dict.fromkeys(i for r in requests for i in r.args[0]))
            try:
                handle(ids)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("%s: transient error (%s); retrying %d ids", name, exc, len(ids))
                dispatch(step, ids, countdown=1 + random.random())

        return task

    return decorate


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
        rows = authorize.held(uow.conn, ready)
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
        settlement.settle(uow.conn, ids, priority="instant")
        uow.commit()
