"""Beat task: dispatch webhook deliveries that are due (retries and lost first attempts)."""

from __future__ import annotations

import functools
import logging

import redis

from shared.config import get_settings
from shared.services import webhooks
from workers import runtime
from workers.base import stage_task
from workers.dispatch import dispatch

log = logging.getLogger(__name__)
settings = get_settings()

# Per run; the next run (every webhook_dispatch_interval_s) takes the rest.
DUE_LIMIT = 5000


@functools.cache
def _redis():
    return redis.Redis.from_url(settings.redis_url)


@stage_task("clearhouse.scheduler.dispatch_webhooks", queue="maintenance")
def dispatch_webhooks(self):
    # While deliveries wait in the queue, the worker will reach them: sending
    # them again would only feed a backlog with duplicates (claim() would let
    # one through, but each costs a message and a claim).
    if _redis().llen(settings.redis_key_prefix + "notifications"):
        return 0
    with runtime.uow() as uow:
        ids = webhooks.due(uow.conn, DUE_LIMIT)
    dispatch("deliver_webhooks", ids)
    if ids:
        log.info("dispatched %d due webhook deliveries", len(ids))
    return len(ids)
