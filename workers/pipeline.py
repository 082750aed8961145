"""Pipeline tasks: thin wrappers that run one stage and hand on the survivors."""

from __future__ import annotations

import functools
import logging
import random

from celery_batches import Batches

from shared.config import get_settings
from shared.services.stages import authorize, fees, fraud, limits, settlement
from workers import runtime
from workers.base import is_transient, run_batch, stage_task
from workers.celery_app import app
from workers.dispatch import dispatch

log = logging.getLogger(__name__)
settings = get_settings()


@app.task(
    base=Batches,
    name="clearhouse.limits",
    acks_late=True,
    # Light load: a batch of one within a few ms. Heavy load: up to batch_max
    # ids per transaction and per onward message.
    flush_every=settings.batch_max,
    flush_interval=settings.batch_interval_ms / 1000,
)
def check_limits(requests):
    ids = list(dict.fromkeys(i for r in requests for i in r.args[0]))
    try:
        result = run_batch(limits.run, ids)
    except Exception as exc:
        # Batches has no autoretry: put the ids back ourselves (re-drive is
        # the backstop if even this fails).
        log.warning("limits batch failed (%s); retrying in 1 s", exc)
        if is_transient(exc):
            dispatch("limits", ids, countdown=1 + random.random())
            return
        raise
    dispatch("fraud", result.advanced)


@stage_task("clearhouse.fraud")
def score_risk(self, ids):
    step = functools.partial(
        fraud.run,
        fraud_fingerprints=runtime.fraud_fingerprints(),
        default_threshold=settings.fraud_block_threshold,
    )
    step.__name__ = "fraud"
    dispatch("fees", run_batch(step, ids).advanced)


@stage_task("clearhouse.fees")
def compute_fees(self, ids):
    dispatch("authorize", run_batch(fees.run, ids).advanced)


@stage_task("clearhouse.authorize")
def authorize_payments(self, ids):
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


@stage_task("clearhouse.settle_instant", queue="settlement.instant")
def settle_instant(self, ids):
    with runtime.uow() as uow:
        settlement.settle(uow.conn, ids, priority="instant")
        uow.commit()
