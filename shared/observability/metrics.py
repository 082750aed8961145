"""Every Prometheus metric of clearhouse, and helpers to record them.

Processes that fork (gunicorn, Celery prefork) use multiprocess mode: each
process writes its samples to files in its node's folder and the scrape
aggregates them (see ``use_multiprocess_dir``). Every metric has labels on
purpose: a labelled metric creates its value (and its file) on first use,
so a worker may still switch to multiprocess mode after importing this.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

from shared.domain.intent import FINAL_STATUSES
from shared.money import CURRENCIES

log = logging.getLogger(__name__)

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400)

HTTP_REQUESTS = Counter(
    "clearhouse_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "clearhouse_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=_FAST,
)
INTENTS_CREATED = Counter(
    "clearhouse_intents_created_total", "Payment intents accepted", ["currency", "priority"]
)
TRANSITIONS = Counter(
    "clearhouse_intent_transitions_total",
    "Intent status changes (failure_code empty unless failed)",
    ["status", "failure_code"],
)
ACCEPT_TO_FINAL = Histogram(
    "clearhouse_intent_accept_to_final_seconds",
    "From acceptance to a final status (succeeded, failed, canceled)",
    ["priority", "status"],
    buckets=_SLOW,
)
TASK_RUNTIME = Histogram(
    "clearhouse_task_runtime_seconds",
    "Celery task run time",
    ["task", "queue", "outcome"],
    buckets=_FAST,
)
TASK_QUEUE_WAIT = Histogram(
    "clearhouse_task_queue_wait_seconds",
    "From publish (or ETA) to the start of the task",
    ["task", "queue", "outcome"],
    buckets=_FAST,
)
TASK_RETRIES = Counter("clearhouse_task_retries_total", "Celery task retries", ["task"])
WEBHOOK_ATTEMPTS = Counter(
    "clearhouse_webhook_attempts_total", "Webhook delivery attempts", ["outcome"]
)
# From the delivery's creation (in its event's own transaction: the event's
# creation; a manual redelivery counts from the redelivery) to the attempt that
# succeeded. Retries back off for up to 3 days, hence buckets up to 3 days.
WEBHOOK_DELIVERY_LATENCY = Histogram(
    "clearhouse_webhook_delivery_latency_seconds",
    "From the event's creation to its successful delivery (first_attempt: no retry needed)",
    ["first_attempt"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400, 259200),
)
# Not zero means deliveries are being failed unsent (e.g. secrets sealed with
# a key this deployment does not hold): worth an alert, nobody gets those events.
WEBHOOK_PREPARE_FAILURES = Counter(
    "clearhouse_webhook_prepare_failures_total",
    "Webhook deliveries failed without sending: secret, endpoint_missing, event_missing",
    ["reason"],
)
FRAUD_SCORES = Histogram(
    "clearhouse_fraud_score",
    "Fraud scores (0-100) of scored intents",
    ["outcome"],
    buckets=(0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 90, 100),
)
# Major units as a float: a counter is a float64 in Prometheus anyway, so
# minor units of ETH (10**18 per coin) would lose precision just the same.
# A rate to watch, not a figure to reconcile: the ledger is the truth.
LEDGER_VOLUME = Counter(
    "clearhouse_ledger_volume_total",
    "Ledger transfer amounts in major units",
    ["currency", "kind"],
)
# Not zero means requests went through unthrottled: Redis was away and the
# limiter and lockout failed open (shared/security/redis_breaker.py).
RATE_LIMITER_UNAVAILABLE = Counter(
    "clearhouse_rate_limiter_unavailable_total",
    "Rate-limit and lockout checks skipped (the request let through) while Redis was away",
    ["check"],
)
# Admission control (intake/admission.py): creates refused while the pipeline's
# backlog was at MAX_BACKLOG, and the backlog as the API last sampled it.
INTAKE_SHED = Counter(
    "clearhouse_intake_shed_total",
    "Creates refused 503 overloaded: the pipeline's backlog was at MAX_BACKLOG",
    ["route"],
)
# ... and creates refused because they waited past MAX_QUEUE_WAIT_MS for an API thread.
INTAKE_QUEUE_SHED = Counter(
    "clearhouse_intake_queue_shed_total",
    "Creates refused 503 overloaded: they waited past MAX_QUEUE_WAIT_MS for an API thread",
    ["route"],
)
INTAKE_BACKLOG = Gauge(
    "clearhouse_intake_backlog",
    "Processing intents as an API process last sampled them (counted up to 2 x MAX_BACKLOG)",
    ["route"],
    # Each API process samples on its own; the latest sample of a live one wins.
    multiprocess_mode="livemostrecent",
)
RECONCILIATION_DISCREPANCIES = Gauge(
    "clearhouse_reconciliation_discrepancies",
    "Discrepancies found by the last reconciliation run (0: the books reconcile)",
    ["report"],
    # One report job sets it; the latest value wins across processes.
    multiprocess_mode="mostrecent",
)


def use_multiprocess_dir(path: str) -> None:
    """Empty ``path`` and keep this process's (and later children's) samples there."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    # Values are created on first use of a label set; from now on in files.
    prometheus_client.values.ValueClass = prometheus_client.values.get_value_class()


def mark_process_dead(pid: int) -> None:
    """Merge a dead child's live gauges away (its counters stay counted)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def registry(*collectors):
    """The registry to expose: all processes' files in multiprocess mode, and ``collectors``.

    Without collectors and outside multiprocess mode, the default registry itself.
    """
    from prometheus_client import CollectorRegistry, multiprocess

    multi = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    if not multi and not collectors:
        return prometheus_client.REGISTRY
    # No describe at register time: collectors that read at scrape time would
    # otherwise be read once more, for nothing.
    reg = CollectorRegistry(auto_describe=False)
    if multi:
        multiprocess.MultiProcessCollector(reg)
    else:
        reg.register(_Proxy(prometheus_client.REGISTRY))
    for collector in collectors:
        reg.register(collector)
    return reg


class _Proxy:
    """Another registry's samples, as one collector of this one."""

    def __init__(self, source):
        self._source = source

    def collect(self):
        return self._source.collect()


def serve(name: str, port: int, addr: str, build_registry, logger=log):
    """Serve ``build_registry()`` on ``addr:port`` in a thread; the server, or None.

    Port 0 (or below) serves nothing and builds no registry. A port that cannot
    be bound is logged on ``logger``, never fatal: metrics must never stop payments.
    """
    if port <= 0:
        return None
    from prometheus_client import start_http_server

    registry = build_registry()
    try:
        server, _ = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        logger.error("%s metrics port %d unavailable (%s); metrics not served", name, port, exc)
        return None
    logger.info("%s metrics on %s:%d", name, addr, port)
    return server


# --- recorded once the transaction commits ----------------------------------
# A batch that rolls back (isolation re-runs, retries, redelivery) must not
# count its transitions twice, so observations wait for the unit of work's
# commit (``uow.on_commit``); a rollback drops them.


def intent_events(uow, items) -> None:
    """Count created intents and status transitions from events.emit items."""
    rows = [data for _, type_, _, data in items if type_.startswith("payment_intent.")]
    if rows:
        uow.on_commit(lambda: _count_intents(rows))


def _count_intents(rows) -> None:
    for data in rows:
        status = data["status"]
        if status == "processing":
            INTENTS_CREATED.labels(data["currency"], data["priority"]).inc()
        TRANSITIONS.labels(status, data.get("failure_code") or "").inc()


def intents_final(uow, rows) -> None:
    """Observe accept-to-final latency of intent rows that reached a final status."""
    done = [
        (r.priority, r.status, r.created_at, r.finalized_at)
        for r in rows
        if r.status in FINAL_STATUSES
    ]
    if done:
        uow.on_commit(lambda: _observe_final(done))


def _observe_final(done) -> None:
    now = datetime.now(UTC)
    for priority, status, created, finalized in done:
        ACCEPT_TO_FINAL.labels(priority, status).observe(
            max(((finalized or now) - created).total_seconds(), 0)
        )


def fraud_scored(uow, score: int, level: str) -> None:
    """Observe a risk score by outcome: passed, review (the review band), blocked."""
    outcome = {"elevated": "review", "highest": "blocked"}.get(level, "passed")
    uow.on_commit(lambda: FRAUD_SCORES.labels(outcome).observe(score))


def ledger_recorded(uow, transfers) -> None:
    """Add transfer amounts to the ledger volume, per currency and kind."""
    sums: dict[tuple[str, str], int] = {}
    for t in transfers:
        key = (t.currency, str(t.kind))
        sums[key] = sums.get(key, 0) + (t.amount if t.amount > 0 else t.pending_amount or 0)
    uow.on_commit(lambda: _add_volume(sums))


def _add_volume(sums) -> None:
    for (currency, kind), minor in sums.items():
        # Integer division first keeps the whole units exact; only the
        # fraction goes through a float.
        unit = CURRENCIES[currency].unit if currency in CURRENCIES else 1
        whole, frac = divmod(minor, unit)
        LEDGER_VOLUME.labels(currency, kind).inc(whole + frac / unit)


def webhook_attempts(outcomes) -> None:
    """Count webhook POST outcomes: succeeded, http_error (non-2xx) or network_error."""
    for o in outcomes:
        kind = "succeeded" if o.ok else ("http_error" if o.status_code else "network_error")
        WEBHOOK_ATTEMPTS.labels(kind).inc()


def webhooks_delivered(uow, delivered) -> None:
    """Observe [(seconds since the event, first attempt?)] once their transaction commits."""
    delivered = list(delivered)
    if delivered:
        uow.on_commit(lambda: _observe_delivered(delivered))


def _observe_delivered(delivered) -> None:
    for seconds, first in delivered:
        WEBHOOK_DELIVERY_LATENCY.labels("true" if first else "false").observe(max(seconds, 0))


def webhook_prepare_failures(uow, reasons) -> None:
    """Count deliveries failed unsent (one reason each) once their transaction commits."""
    reasons = list(reasons)
    if reasons:
        uow.on_commit(lambda: _count_prepare_failures(reasons))


def _count_prepare_failures(reasons) -> None:
    for reason in reasons:
        WEBHOOK_PREPARE_FAILURES.labels(reason).inc()


def reconciliation_discrepancies(count: int, report: str = "daily") -> None:
    """Record what the last reconciliation found (the gauge keeps the latest)."""
    RECONCILIATION_DISCREPANCIES.labels(report).set(count)
