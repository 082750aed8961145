"""Celery signal handlers: JSON logs, log context, task metrics, the metrics port."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime

from celery import signals

from shared.config import Settings
from shared.observability import context, metrics
from shared.observability import logging as jsonlog

log = logging.getLogger(__name__)

# Message headers set on publish and read by the worker that runs the task.
REQUEST_ID = "clearhouse_request_id"
PUBLISHED_AT = "clearhouse_published_at"

# task id -> (perf_counter at start, queue, [queue waits], messages); one entry per
# running task of this process (a prefork child or a solo worker runs one).
_running: dict[str, tuple[float, str, list[float], int]] = {}
# The Celery app's settings (workers/celery_app.py hands them over when it is built).
_settings: Settings | None = None


def use_settings(settings: Settings) -> None:
    """Give the handlers the settings the Celery app was built from."""
    global _settings
    _settings = settings


@signals.setup_logging.connect
def _json_logging(**_) -> None:
    # Connecting here stops Celery from installing its own text handlers.
    jsonlog.configure(_settings.log_level)


@signals.celeryd_init.connect
def _json_logging_early(**_) -> None:
    # The worker warns (running as root, say) before it sets up logging.
    jsonlog.configure(_settings.log_level)


@signals.worker_init.connect
def _serve_metrics(sender, **_) -> None:
    # Main process, before the pool forks: every child inherits the folder.
    settings = sender.app.runtime.settings
    node = re.sub(r"[^A-Za-z0-9._-]", "_", sender.hostname)
    metrics.use_multiprocess_dir(f"{settings.metrics_dir}/worker-{node}")
    # Loopback unless told (containers: 0.0.0.0 so Prometheus can scrape).
    addr = settings.worker_metrics_addr
    metrics.serve("worker", settings.worker_metrics_port, addr, metrics.registry, log)


@signals.worker_init.connect
def _keys_or_exit(sender, **_) -> None:
    # The keys are loaded now, not at the first task: in production a missing
    # key must stop the worker at start. Celery logs and swallows an exception
    # from a signal handler, so exit (SystemExit is not an Exception).
    try:
        sender.app.runtime.vault  # noqa: B018 - loading it is the point
    except Exception as exc:
        log.critical("worker cannot start: %s", exc)
        raise SystemExit(f"clearhouse: {exc}") from None


@signals.worker_process_shutdown.connect
def _child_exited(pid=None, **_) -> None:
    if pid:
        metrics.mark_process_dead(pid)


@signals.before_task_publish.connect
def _stamp(headers=None, **_) -> None:
    if headers is None:
        return
    headers[PUBLISHED_AT] = time.time()
    request_id = context.get("request_id")
    if request_id:
        headers[REQUEST_ID] = request_id


def _requests(task, args) -> list[dict]:
    """The message headers of each request this run serves (a batch has many)."""
    if args and isinstance(args[0], list) and args[0] and hasattr(args[0][0], "request_dict"):
        return [
            dict(r.request_dict or {}, args=r.args, delivery_info=r.delivery_info) for r in args[0]
        ]
    req = task.request
    return [
        {
            PUBLISHED_AT: getattr(req, PUBLISHED_AT, None),
            REQUEST_ID: getattr(req, REQUEST_ID, None),
            "eta": req.eta,
            "args": req.args,
            "delivery_info": req.delivery_info,
        }
    ]


def _wait(headers: dict, now: float) -> float | None:
    published = headers.get(PUBLISHED_AT)
    if not isinstance(published, int | float):
        return None
    start = published
    eta = headers.get("eta")
    if eta:
        # A countdown is not queueing: measure from when it became due.
        start = max(start, datetime.fromisoformat(eta).timestamp())
    return max(now - start, 0.0)


def _single_intent(reqs: list[dict]) -> str | None:
    # Stage tasks take a list of intent ids first; other tasks other ids.
    ids = {i for h in reqs for a in (h.get("args") or [])[:1] if isinstance(a, list) for i in a}
    one = ids.pop() if len(ids) == 1 else None
    return one if isinstance(one, str) and one.startswith("pi_") else None


@signals.task_prerun.connect
def _task_started(task_id=None, task=None, args=None, **_) -> None:
    reqs = _requests(task, args)
    # A batch gathering several requests' intents (or re-driven ones) has no one id.
    request_ids = {h.get(REQUEST_ID) for h in reqs}
    context.clear()
    context.bind(
        task_id=task_id,
        request_id=request_ids.pop() if len(request_ids) == 1 else None,
        intent_id=_single_intent(reqs),
    )
    now = time.time()
    waits = [w for w in (_wait(h, now) for h in reqs) if w is not None]
    info = reqs[0].get("delivery_info") or {}
    queue = info.get("routing_key") or info.get("queue") or "unknown"
    _running[task_id] = (time.perf_counter(), queue, waits, len(reqs))


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_) -> None:
    started = _running.pop(task_id, None)
    if started is None:
        context.clear()
        return
    t0, queue, waits, n = started
    outcome = (state or "unknown").lower()
    runtime = time.perf_counter() - t0
    metrics.TASK_RUNTIME.labels(task.name, queue, outcome).observe(runtime)
    wait = metrics.TASK_QUEUE_WAIT.labels(task.name, queue, outcome)
    for w in waits:
        wait.observe(w)
    if getattr(task, "flush_every", None) is not None:
        # Celery logs a line per task, but nothing for a batch (celery-batches).
        log.info("%s ran %d message(s) in %.1f ms: %s", task.name, n, runtime * 1000, outcome)
    context.clear()


@signals.task_retry.connect
def _task_retried(sender=None, **_) -> None:
    metrics.TASK_RETRIES.labels(getattr(sender, "name", "unknown")).inc()
