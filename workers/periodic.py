"""Beat-driven tasks (queue ``maintenance``): each runs one job of shared.services."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta

import redis

from shared.observability import queues
from shared.services import maintenance
from workers.base import task
from workers.topology import STEPS


@task("clearhouse.scheduler.redrive")
def redrive(self, uow):
    return maintenance.redrive(uow, self.settings.redrive_after_s)


@task("clearhouse.scheduler.expire_holds")
def expire_holds(self, uow):
    return len(maintenance.expire_holds(uow))


@task("clearhouse.scheduler.prune_idempotency_keys")
def prune_idempotency_keys(self, uow):
    return maintenance.prune_idempotency_keys(uow, self.settings.idempotency_retention_h)


@task("clearhouse.scheduler.settle_standard")
def settle_standard(self, uow, cursor=None):
    return maintenance.open_window(uow, "standard", cursor)


@task("clearhouse.scheduler.settle_economy")
def settle_economy(self, uow, cursor=None):
    return maintenance.open_window(uow, "economy", cursor)


@task("clearhouse.scheduler.dispatch_webhooks")
def dispatch_webhooks(self, uow):
    # While a large backlog waits in the queue the worker will reach it:
    # sending its deliveries again would only feed it duplicates (claim() lets
    # one through, but each costs a message and a claim). A small one must
    # not hold back due retries, or steady traffic would starve them.
    if webhook_backlog(self.settings) >= backlog_max(self.settings):
        return 0
    return maintenance.send_due_webhooks(uow)


# Its work grows with the day's volume (5–10 s for 100,000 intents): the
# default 60/90 s limits would kill a busy day's report half-way, for nothing.
@task("clearhouse.scheduler.daily_report", uow_kind="report", soft_time_limit=1800, time_limit=1900)
def daily_report(self, uow, day: str | None = None):
    report_day = date.fromisoformat(day) if day else datetime.now(UTC).date() - timedelta(days=1)
    return maintenance.daily_report(uow, report_day)


def backlog_max(settings) -> int:
    # What the background worker takes in one gulp (its prefetch): a backlog
    # below this is reached within a batch or two, so due work is sent now.
    return 4 * settings.batch_max


def webhook_backlog(settings) -> int:
    queue = STEPS["deliver_webhooks"].queue
    return queues.depths(_redis(settings.redis_url), settings.redis_key_prefix, [queue])[queue]


@functools.cache
def _redis(url: str):
    return redis.Redis.from_url(url)
