"""Beat task: dispatch webhook deliveries that are due (retries and lost first attempts)."""

from __future__ import annotations

import functools
import logging

import redis

from shared.config import get_settings
from shared.observability import queues
from shared.services import webhooks
from workers import runtime
from workers.base import stage_task
from workers.dispatch import dispatch

log = logging.getLogger(__name__)
settings = get_settings()

# Per run; the next run (every webhook_dispatch_interval_s) takes the rest.
DUE_LIMIT = 5000


def backlog_max() -> int:
    # What the background worker takes in one gulp (its prefetch): a backlog
    # below this is reached within a batch or two, so due work is sent now.
    return 4 * settings.batch_max


@functools.cache
def _redis():
    return redis.Redis.from_url(settings.redis_url)


def _backlog() -> int:
    return queues.depths(_redis(), settings.redis_key_prefix, ["notifications"])["notifications"]


@stage_task("clearhouse.scheduler.dispatch_webhooks", queue="maintenance")
def dispatch_webhooks(self):
    # While a large backlog waits in the queue, the worker will reach it:
    # sending its deliveries again would only feed it with duplicates (claim()
    # lets one through, but each costs a message and a claim). A small one
    # must not hold back due retries, or steady traffic would starve them.
    if _backlog() >= backlog_max():
        return 0
    with runtime.uow() as uow:
        ids = webhooks.due(uow, DUE_LIMIT)
    dispatch("deliver_webhooks", ids)
    if ids:
        log.info("dispatched %d due webhook deliveries", len(ids))
    return len(ids)
