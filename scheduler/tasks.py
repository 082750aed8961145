"""Beat-driven tasks: thin wrappers around scheduler.jobs."""

from __future__ import annotations

import logging

from shared.config import get_settings
from shared.services import maintenance as jobs
from workers import runtime
from workers.base import stage_task
from workers.dispatch import STAGE_STEP, dispatch

log = logging.getLogger(__name__)
settings = get_settings()


@stage_task("clearhouse.scheduler.redrive", queue="maintenance")
def redrive(self):
    with runtime.uow() as uow:
        stuck = jobs.stuck_intents(uow, settings.redrive_after_s)
        unsettled = jobs.unsettled_instant(uow, settings.redrive_after_s)
    for stage, ids in stuck.items():
        log.info("re-driving %d intents stuck at %s", len(ids), stage)
        dispatch(STAGE_STEP[stage], ids)
    if unsettled:
        dispatch("settle_instant", unsettled)
    return {"stuck": sum(map(len, stuck.values())), "unsettled": len(unsettled)}


@stage_task("clearhouse.scheduler.expire_holds", queue="maintenance")
def expire_holds(self):
    with runtime.uow() as uow:
        expired = jobs.expire_holds(uow)
        uow.commit()
    if expired:
        log.info("expired %d holds", len(expired))
    return len(expired)


@stage_task("clearhouse.scheduler.prune_idempotency_keys", queue="maintenance")
def prune_idempotency_keys(self):
    with runtime.uow() as uow:
        n = jobs.prune_idempotency_keys(uow, settings.idempotency_retention_h)
        uow.commit()
    return n
