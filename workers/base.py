"""The task base: every clearhouse task runs in one unit of work, committed.

``Task`` opens a unit of work, calls the body with it, commits, and only
then are the body's messages published (``uow.enqueue``) and its hooks run
(``uow.on_commit``). A transient error (``shared.db.faults``) is retried
with one backoff policy; any other error fails the task. A task that a beat
entry runs (workers/schedule.py) records its success in that same
transaction (``beat_job_runs``, read by the beat-job metric).

``BatchTask`` is the same base plus gathering (celery-batches): messages
carrying lists of ids are flushed together at ``batch_max`` ids or every
``batch_interval_ms``, and a stage's batch runs through
``shared.services.batches.run_isolated``, so an intent that breaks its
batch is isolated and failed alone. Bodies are declared with ``task`` and
``stage`` (one place for the options, so no typos).
"""

from __future__ import annotations

import functools
import logging
import random

import celery

from shared.db.faults import is_transient
from shared.db.uow import transact
from shared.domain.lanes import SUFFIX
from shared.services import operations
from shared.services.batches import run_isolated
from workers.batches import ReconnectSafeBatches
from workers.celery_app import app
from workers.runtime import Runtime
from workers.schedule import beat_schedule
from workers.topology import STEPS

log = logging.getLogger(__name__)

MAX_RETRIES = 5


def retry_delay(retries: int) -> float:
    """The one backoff policy: 1, 2, 4 ... 30 s, with full jitter above half."""
    base = min(30.0, 2.0**retries)
    return base * (0.5 + random.random() / 2)


class Task(celery.Task):
    abstract = True
    # Bodies take the unit of work first, which callers never pass: Celery's
    # argument check against the signature would refuse every call.
    typing = False
    acks_late = True
    max_retries = MAX_RETRIES
    uow_kind = "worker"

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime

    @property
    def settings(self):
        return self.runtime.settings

    @property
    def beat_job(self) -> str | None:
        """The beat entry that runs this task (workers/schedule.py), if any."""
        return beat_jobs(self.settings).get(self.name)

    def __call__(self, *args, **kwargs):
        try:
            with self.runtime.uow(self.uow_kind) as uow:
                result = self.run(uow, *args, **kwargs)
                if self.beat_job:
                    # In the job's own transaction: recorded exactly when its work commits.
                    operations.job_succeeded(uow, self.beat_job)
                uow.commit()
            return result
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise self.retry(exc=exc, countdown=retry_delay(self.request.retries)) from exc


class BatchTask(ReconnectSafeBatches, Task):
    """A stage: its messages gathered into batches of intent ids."""

    abstract = True
    # The step whose queue the ids come from (to put them back on a transient
    # error), and the step the advanced intents go on to (None: the body says).
    step: str = ""
    then: str | None = None
    # False: the batch runs in one unit of work, without isolating intents
    # (its ids are not intents: webhook deliveries).
    isolate: bool = True
    # True: the body ``body(self, ids)`` opens its own units of work
    # (authorize's three, around the acquirer's call).
    flow: bool = False

    @property
    def flush_every(self) -> int:
        return self.settings.batch_max

    @property
    def flush_interval(self) -> float:
        return self.settings.batch_interval_ms / 1000

    def __call__(self, requests):
        ids = list(dict.fromkeys(i for r in requests for i in r.args[0]))
        try:
            if self.flow:
                return self.run(ids)
            if self.isolate:
                return run_isolated(self._new_uow, self._body, ids, self.then)
            return transact(self._new_uow, self._body, ids)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.put_back(ids, exc)

    def _new_uow(self):
        return self.runtime.uow(self.uow_kind)

    def _body(self, uow, ids):
        return self.run(uow, ids)

    def put_back(self, ids: list[str], exc: Exception, step: str | None = None) -> None:
        """After a transient error: ``ids`` back on ``step``'s queue (this task's by default)."""
        # Batches has no retry of its own: the ids go back on the queue.
        log.warning(
            "%s: transient error (%s); retrying %d ids", self.name, type(exc).__name__, len(ids)
        )
        try:
            self.runtime.publish(step or self.step, ids, countdown=retry_delay(0))
        except Exception as again:
            # The broker is away too: the intents are safe in Postgres and
            # the scheduler's re-drive sends them again.
            log.warning("%s: could not re-enqueue (%s); re-drive will", self.name, again)


@functools.cache
def beat_jobs(settings) -> dict[str, str]:
    """Task name -> the name of the beat entry that runs it."""
    return {entry["task"]: job for job, entry in beat_schedule(settings).items()}


def task(name: str, **options):
    """Declare a task ``body(self, uow, *args)`` with the project's defaults."""
    return app.task(name=name, base=Task, bind=True, **options)


def stage(step: str, then: str | None = None, *, isolate=True, flow=False):
    """Declare the batch task of ``step``: ``body(self, uow, ids) -> StageResult``.

    Its task name comes from workers/topology.py; ``flow``: ``body(self, ids)``.
    """
    options = dict(step=step, then=then, isolate=isolate, flow=flow)
    return app.task(name=STEPS[step].task, base=BatchTask, bind=True, **options)


def laned_stage(step: str, then: str | None = None, **options):
    """``stage`` twice: for ``step`` and for its instant lane (shared/domain/lanes.py).

    The lane's task hands its survivors to the lane's ``then``; the body is the
    same function, and ``self.step`` tells it which lane it runs in.
    """

    def register(body):
        stage(step + SUFFIX, then and then + SUFFIX, **options)(body)
        return stage(step, then, **options)(body)

    return register
