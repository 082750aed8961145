"""Settlement windows: the beat job lists what is due, batches settle on their own queues.

The window jobs run on ``maintenance`` and only read ids, so a big economy
window is many small messages on ``settlement.economy`` (interleaved with
other work there), never a long task, and never on ``settlement.instant``.
"""

from __future__ import annotations

import logging

from shared.config import get_settings
from shared.services.stages import settlement
from workers import runtime
from workers.base import stage_task
from workers.celery_app import app

log = logging.getLogger(__name__)
settings = get_settings()

WINDOW_QUEUES = {"standard": "settlement.standard", "economy": "settlement.economy"}
# Ids listed per run; a bigger backlog continues in a follow-up run.
SCAN_LIMIT = 10_000


@stage_task("clearhouse.scheduler.settle_standard", queue="maintenance")
def settle_standard(self, after=None):
    return open_window(self, "standard", after)


@stage_task("clearhouse.scheduler.settle_economy", queue="maintenance")
def settle_economy(self, after=None):
    return open_window(self, "economy", after)


@stage_task("clearhouse.settle_window", queue="settlement.standard")
def settle_window(self, ids):
    with runtime.uow() as uow:
        settled = settlement.settle(uow, ids, skip_locked=True)
        uow.commit()
    return len(settled)


def open_window(task, priority: str, after=None, limit: int = SCAN_LIMIT) -> int:
    """Send every due intent of ``priority`` to its settlement queue in batches."""
    with runtime.uow() as uow:
        due = settlement.due(uow, priority, after, limit)
    ids = [intent_id for _, _, intent_id in due]
    size = settings.batch_max
    for start in range(0, len(ids), size):
        app.send_task(
            "clearhouse.settle_window",
            args=[ids[start : start + size]],
            queue=WINDOW_QUEUES[priority],
        )
    if len(due) == limit:
        task.apply_async(kwargs={"after": list(due[-1])}, queue="maintenance")
    if ids:
        log.info("%s window: %d intents sent to settle", priority, len(ids))
    return len(ids)
