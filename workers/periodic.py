"""Beat-driven tasks (queue ``maintenance``): each runs one job of shared.services."""

from __future__ import annotations

import contextlib
import functools
from datetime import UTC, date, datetime, timedelta

import redis

from shared.observability import queues
from shared.services import anchoring, bank_resolver, card_data, maintenance, retention
from workers.base import task
from workers.topology import STEPS


@task("clearhouse.scheduler.redrive")
def redrive(self, uow):
    return maintenance.redrive(uow, self.settings.redrive_after_s)


@task("clearhouse.scheduler.resolve_bank_transactions")
def resolve_bank_transactions(self, uow):
    # The resolver opens a unit of work per step (no transaction waits on a bank);
    # ``uow`` only records the job's success.
    rt = self.runtime
    return bank_resolver.resolve(rt.uow, rt.banks, self.settings.bank_decision_timeout_s)


@task("clearhouse.scheduler.expire_holds")
def expire_holds(self, uow):
    return len(maintenance.expire_holds(uow))


# Retention: one batch per run; a full batch sends the next (``more``), so a
# big backlog is many short transactions, never one long one.


@task("clearhouse.scheduler.prune_idempotency_keys")
def prune_idempotency_keys(self, uow, more=None):
    hours = self.settings.idempotency_retention_h
    return _batch(self, uow, "prune_idempotency_keys", retention.prune_idempotency_keys, hours)


@task("clearhouse.scheduler.purge_card_data")
def purge_card_data(self, uow, more=None):
    days = self.settings.card_retention_days
    return _batch(self, uow, "purge_card_data", retention.purge_card_data, days)


@task("clearhouse.scheduler.prune_webhook_attempts")
def prune_webhook_attempts(self, uow, more=None):
    days = self.settings.webhook_attempt_retention_days
    return _batch(self, uow, "prune_webhook_attempts", retention.prune_webhook_attempts, days)


@task("clearhouse.scheduler.prune_events")
def prune_events(self, uow, more=None):
    days = self.settings.event_retention_days
    return _batch(self, uow, "prune_events", retention.prune_events, days)


@task("clearhouse.scheduler.prune_limit_counters")
def prune_limit_counters(self, uow, more=None):
    days = self.settings.limit_counter_retention_days
    return _batch(self, uow, "prune_limit_counters", retention.prune_limit_counters, days)


@task("clearhouse.scheduler.prune_refresh_tokens")
def prune_refresh_tokens(self, uow, more=None):
    days = self.settings.refresh_token_retention_days
    return _batch(self, uow, "prune_refresh_tokens", retention.prune_refresh_tokens, days)


def _batch(task, uow, step: str, job, age: int) -> int:
    limit = task.settings.retention_batch
    done = job(uow, age, limit)
    if done >= limit:
        uow.enqueue(step, ["more"])
    return done


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


@task("clearhouse.scheduler.reencrypt_card_data")
def reencrypt_card_data(self, uow, cursor=None):
    # One pass at a time: beat starts one every interval, and a pass over a
    # big table takes longer. The lease is a courtesy, not a guard: two passes
    # at once are safe (SKIP LOCKED, and a row already current is not taken).
    lease = _PassLease(self.settings)
    if len(self.runtime.vault.versions) < 2 or not lease.take(renew=cursor is not None):
        return 0  # one version: nothing can be under an older one
    batch, done = card_data.reencrypt_step(
        uow, self.runtime.vault, self.settings.reencrypt_batch, cursor
    )
    if done:
        uow.on_commit(lease.release)
    return batch.reencrypted


class _PassLease:
    def __init__(self, settings):
        self._redis = _redis(settings.redis_url)
        self._key = f"{settings.redis_key_prefix}clearhouse:reencrypt-pass"
        # Long enough for the next batch's message to wait behind other jobs.
        self._ttl = int(max(120, 3 * settings.reencrypt_interval_s))

    def take(self, renew: bool) -> bool:
        try:
            return bool(self._redis.set(self._key, 1, ex=self._ttl, nx=not renew))
        except redis.RedisError:
            return True  # Redis is away: run (two passes at once are safe)

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError):  # else it expires
            self._redis.delete(self._key)


# Its work grows with the day's volume (5–10 s for 100,000 intents): the
# default 60/90 s limits would kill a busy day's report half-way, for nothing.
@task("clearhouse.scheduler.daily_report", uow_kind="report", soft_time_limit=1800, time_limit=1900)
def daily_report(self, uow, day: str | None = None):
    report_day = date.fromisoformat(day) if day else datetime.now(UTC).date() - timedelta(days=1)
    summary = maintenance.daily_report(uow, report_day)
    if self.settings.anchor_rpc_url and summary["sealed"]:
        uow.enqueue("anchor_seals", ["sealed"])  # at once, not at the next beat
    return summary


# Its own job, after the seal's commit: a node that is away delays the anchor,
# never the seal. A ChainError fails the run (not recorded as a success, so the
# beat-job alert sees a node away for long) and the next run tries again.
@task("clearhouse.scheduler.anchor_seals")
def anchor_seals(self, uow, why=None):
    chain = self.runtime.anchor_chain
    chain.check()  # every run: the node behind the URL may have changed
    step = anchoring.anchor_step(uow, chain)
    return {"sent": len(step.sent), "resent": len(step.resent), "mined": len(step.mined)}


def backlog_max(settings) -> int:
    # What the background worker takes in one gulp (its prefetch): a backlog
    # below this is reached within a batch or two, so due work is sent now.
    return 4 * settings.batch_max


def webhook_backlog(settings) -> int:
    queue = STEPS["deliver_webhooks"].queue
    if settings.broker_is_amqp:
        return _amqp_depths(settings.broker)([queue])[queue]
    return queues.depths(_redis(settings.redis_url), settings.redis_key_prefix, [queue])[queue]


@functools.cache
def _amqp_depths(url: str):
    # One reader, so one kept connection to RabbitMQ, per process.
    return queues.AmqpDepths(url)


@functools.cache
def _redis(url: str):
    return redis.Redis.from_url(url)
