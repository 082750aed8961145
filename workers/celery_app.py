"""The one Celery app: every setting lives here, each with the reason for it.

This module is the Celery composition root (``celery -A workers.celery_app``):
it reads the settings once and hands them to the tasks through
``app.runtime`` (engines, vault, acquirer, the publisher).
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from shared.config import Settings
from shared.db.engine import dispose_engines
from workers import signals  # JSON logs, log context, task metrics
from workers.publish import Publisher
from workers.runtime import Runtime
from workers.schedule import beat_schedule
from workers.topology import MAINTENANCE, task_routes

# Every module that declares tasks, named so a worker registers them all.
TASK_MODULES = ["workers.pipeline", "workers.notifications", "workers.periodic"]


class ClearhouseCelery(Celery):
    runtime: Runtime


def create_celery_app(settings: Settings | None = None) -> ClearhouseCelery:
    """Build the app from ``settings`` (default: the environment)."""
    settings = settings or Settings.from_env()
    signals.use_settings(settings)
    app = ClearhouseCelery("clearhouse", broker=settings.broker, include=TASK_MODULES)
    app.runtime = Runtime(settings, Publisher(app, settings.batch_max))
    app.conf.update(
        # Ack only after the task ran: a worker killed mid-task leaves the message
        # to be redelivered, and every task is idempotent (compare-and-set).
        task_acks_late=True,
        # ... and a child killed by the OOM killer or SIGKILL counts as "not run".
        task_reject_on_worker_lost=True,
        # Results are in Postgres; a result backend would only cost round trips.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        accept_content=["json"],
        # Tasks are short; a stuck one is killed and its message redelivered.
        task_soft_time_limit=60,
        task_time_limit=90,
        # The first stage gathers messages into batches (celery-batches); a worker
        # must be allowed to hold at least a full batch unacknowledged.
        # Stage workers run the solo pool (one process per queue group, DESIGN
        # §6), where prefetch = this multiplier: several full batches may wait.
        worker_prefetch_multiplier=4 * settings.batch_max,
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        broker_pool_limit=20,
        # Task events cost a broker publish per task (~10 % of a stage worker's
        # time); Flower switches them on in the workers while it runs.
        worker_send_task_events=False,
        task_send_sent_event=False,
        # workers/topology.py is the one place queue names are written.
        task_default_queue=MAINTENANCE,
        task_routes=task_routes(),
        beat_schedule=beat_schedule(settings),
        # Exactly one active beat, by a lock in Redis (RedBeat), not by hope: a
        # second beat blocks on the lock and takes over when the first dies and
        # its lock expires. The loop must tick well inside the lock's lifetime.
        beat_scheduler="scheduler.beat.ResilientRedBeatScheduler",
        redbeat_redis_url=settings.redis_url,
        redbeat_key_prefix=f"{settings.redis_key_prefix}clearhouse:redbeat",
        redbeat_lock_timeout=settings.beat_lock_timeout_s,
        beat_max_loop_interval=max(1, settings.beat_lock_timeout_s // 3),
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
    )
    return app


def broker_transport_options(settings: Settings) -> dict:
    """kombu's options for the broker BROKER_URL (else REDIS_URL) names."""
    if settings.broker_is_amqp:
        # RabbitMQ: durable classic queues, persistent messages (Celery's
        # defaults), an unacked message redelivered when its consumer's
        # connection closes; the vhost in the URL isolates deployments.
        # No x-max-priority: isolation is by queue (one per stage and
        # settlement priority, workers/topology.py), never by message
        # priority. Countdowns must stay well under RabbitMQ's
        # consumer_timeout (30 min by default): a worker holds a countdown's
        # message unacknowledged, and past it the broker closes the channel
        # (celery/celery#6760). Ours are seconds.
        return {}
    # Redis redelivers an unacked message after this long. Longer than any
    # task or countdown we use (retries are seconds; multi-day waits live in
    # Postgres and are dispatched by the scheduler).
    # The key prefix lets several deployments (or test sessions) share one
    # Redis without ever consuming each other's messages.
    return {"visibility_timeout": 3600, "global_keyprefix": settings.redis_key_prefix}


app = create_celery_app()


def publish(step: str, ids, countdown: float | None = None) -> None:
    """Send ``ids`` to ``step`` with this process's app (the API and the relay use it)."""
    app.runtime.publish(step, ids, countdown=countdown)


@worker_process_init.connect
def _fresh_connections_after_fork(**_):
    # Pooled Postgres connections must not be shared with the parent process.
    dispose_engines()
