"""The publisher: the only code that sends Celery messages.

Units of work call it after commit (``uow.enqueue``), the relay inside its
claim (``uow.publish_now``), the batch base to put ids back after a
transient error. Callers name a step, never a task or a queue.
"""

from __future__ import annotations

from celery import Celery

from workers.topology import STEPS


class Publisher:
    def __init__(self, app: Celery, batch_max: int):
        self._app = app
        self._batch_max = batch_max

    def __call__(self, step: str, ids, countdown: float | None = None) -> None:
        """Send ``ids`` to ``step`` in messages of at most ``batch_max`` ids."""
        target = STEPS[step]
        ids = list(ids)
        size = self._batch_max
        for start in range(0, len(ids), size):
            self._app.send_task(
                target.task,
                args=[ids[start : start + size]],
                queue=target.queue,
                countdown=countdown,
            )
