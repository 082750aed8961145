"""The project's task decorator and the batch runner every stage uses."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from shared.config import get_settings
from shared.db.faults import TRANSIENT, is_transient
from shared.domain.intent import FailureCode, Status
from shared.services import outcomes
from shared.services.stages.common import StageResult
from workers import runtime
from workers.batches import ReconnectSafeBatches
from workers.celery_app import app
from workers.dispatch import dispatch

log = logging.getLogger(__name__)
settings = get_settings()


def stage_task(name: str, **options):
    """Declare a task with the project's defaults (one place, so no option typos)."""
    defaults = dict(
        name=name,
        bind=True,
        acks_late=True,
        autoretry_for=TRANSIENT,
        retry_backoff=1,
        retry_backoff_max=30,
        retry_jitter=True,
        max_retries=5,
    )
    return app.task(**{**defaults, **options})


def run_batch(step: Callable, ids: list[str]) -> StageResult:
    """Run ``step(conn, ids)`` in one transaction; isolate intents that break it.

    A transient error propagates (the task retries the whole batch). Any
    other error re-runs each intent on its own so the healthy ones go on, and
    an intent that still fails alone is failed with ``processing_error``
    rather than blocking its batch or being re-driven forever.
    """
    try:
        return _once(step, ids)
    except Exception as exc:
        if is_transient(exc):
            raise
        if len(ids) == 1:
            log.exception("intent %s failed in %s; failing it", ids[0], step.__name__)
            _fail_broken(ids[0])
            return StageResult(failed=list(ids))
        log.warning("batch of %d failed in %s; isolating", len(ids), step.__name__, exc_info=True)
    merged = StageResult()
    for intent_id in ids:
        one = run_batch(step, [intent_id])
        for field in ("advanced", "failed", "retry", "settle_now"):
            getattr(merged, field).extend(getattr(one, field))
    return merged


def _once(step: Callable, ids: list[str]) -> StageResult:
    with runtime.uow() as uow:
        result = step(uow, ids)
        uow.commit()
    return result


def _fail_broken(intent_id: str) -> None:
    from shared.db.tables import payment_intents as pi

    with runtime.uow() as uow:
        row = uow.conn.execute(
            pi.select()
            .where(pi.c.id == intent_id, pi.c.status == Status.PROCESSING)
            .with_for_update()
        ).first()
        if row is not None:
            outcomes.fail(uow, [row], FailureCode.PROCESSING_ERROR)
        uow.commit()


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
            base=ReconnectSafeBatches,
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
                log.warning(
                    "%s: transient error (%s); retrying %d ids", name, type(exc).__name__, len(ids)
                )
                try:
                    dispatch(step, ids, countdown=1 + random.random())
                except Exception as again:
                    # The broker is away too: the intents are safe in Postgres
                    # and the scheduler's re-drive sends them again.
                    log.warning("%s: could not re-enqueue (%s); re-drive will", name, again)

        return task

    return decorate
