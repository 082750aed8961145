"""Beat task: dispatch webhook deliveries that are due (retries and lost first attempts)."""

from __future__ import annotations

import logging

from shared.config import get_settings
from shared.services import webhooks
from workers import runtime
from workers.base import stage_task
from workers.dispatch import dispatch

log = logging.getLogger(__name__)
settings = get_settings()

# Per run; the next run (every webhook_dispatch_interval_s) takes the rest.
DUE_LIMIT = 5000
# Ids per message: what one deliver_webhooks task sends at once (its CHUNK).
CHUNK = 16


@stage_task("clearhouse.scheduler.dispatch_webhooks", queue="maintenance")
def dispatch_webhooks(self):
    with runtime.uow() as uow:
        ids = webhooks.due(uow.conn, DUE_LIMIT)
    # Sending the same id twice is harmless: claim() lets only one through.
    for start in range(0, len(ids), CHUNK):
        dispatch("deliver_webhooks", ids[start : start + CHUNK])
    if ids:
        log.info("dispatched %d due webhook deliveries", len(ids))
    return len(ids)
