"""HTTP request metrics, and the operator port: the API's /metrics, off the merchant port.

The merchant-facing port has no /metrics (it answers 404): the gunicorn master
serves the API's metrics on ``METRICS_PORT`` (default 9807, on ``METRICS_ADDR``,
loopback unless told), summed over every gunicorn worker's files, plus gauges
read at scrape time: the Celery queue depths (Redis) and what Postgres knows
(outbox backlog, oldest processing intent per stage, pending webhooks,
settlement lag, last success of each beat job). A scrape never fails for
them: a source that cannot be read is left out of that scrape and counted in
``clearhouse_metrics_collect_errors_total{source}``.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from shared.observability import metrics
from shared.observability import queues as queues_mod
from workers.topology import QUEUES

log = logging.getLogger(__name__)

# Postgres timeouts of the collector's connections, in ms (statement, lock wait,
# idle in transaction): a scrape must answer well within Prometheus's timeout.
COLLECT_DB_TIMEOUTS = (1_000, 500, 5_000)
COLLECT_CONNECT_TIMEOUT_S = 2


class Metrics:
    def process_request(self, req, resp) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        # The route template, never the raw path: ids would explode label cardinality.
        route = req.uri_template or "unmatched"
        metrics.HTTP_LATENCY.labels(req.method, route).observe(time.perf_counter() - started)
        metrics.HTTP_REQUESTS.labels(req.method, route, resp.status_code).inc()


class CollectErrors:
    """``clearhouse_metrics_collect_errors_total{source}``: scrape-time reads that failed.

    Logs one line when a source starts failing and one when it is back, not one
    per scrape (Prometheus scrapes every few seconds).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._failing: set[str] = set()

    def expect(self, sources) -> None:
        with self._lock:
            for source in sources:
                self._counts.setdefault(source, 0)

    def failed(self, source: str, exc: BaseException) -> None:
        with self._lock:
            self._counts[source] = self._counts.get(source, 0) + 1
            first = source not in self._failing
            self._failing.add(source)
        if first:
            log.warning("metrics: %s unavailable (%s: %s)", source, type(exc).__name__, exc)

    def ok(self, source: str) -> None:
        with self._lock:
            if source not in self._failing:
                return
            self._failing.discard(source)
        log.warning("metrics: %s readable again", source)

    def collect(self):
        family = CounterMetricFamily(
            "clearhouse_metrics_collect_errors",
            "Scrape-time reads that failed (their samples were left out of that scrape)",
            labels=["source"],
        )
        with self._lock:
            counts = sorted(self._counts.items())
        for source, n in counts:
            family.add_metric([source], n)
        yield family


class QueueDepth:
    """``clearhouse_queue_depth{queue}``: messages waiting in every Celery queue, at scrape time.

    Redis: LLEN of the queue's lists; ``reader`` (``queues.reader``) reads
    another broker (RabbitMQ) instead.
    """

    SOURCE = "queue_depth"

    def __init__(self, redis_client, queues=None, key_prefix: str = "", errors=None, reader=None):
        # key_prefix: REDIS_KEY_PREFIX, kombu's global_keyprefix.
        self._read = reader or (lambda names: queues_mod.depths(redis_client, key_prefix, names))
        self._queues = queues
        self._errors = errors or CollectErrors()

    def collect(self):
        if self._queues is None:
            self._queues = QUEUES
        family = GaugeMetricFamily(
            "clearhouse_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]
        )
        try:
            depth = self._read(self._queues)
        except Exception as exc:
            # A scrape must still answer when the broker is away (/ready says so).
            self._errors.failed(self.SOURCE, exc)
            return
        self._errors.ok(self.SOURCE)
        for q, n in depth.items():
            family.add_metric([q], n)
        yield family


def _families(jobs):
    """(source, reader, family builder) for each gauge read from Postgres."""
    from shared.services import operations as ops

    def one(name, doc):
        def build(value):
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        return build

    def labelled(name, doc, label, keep=None):
        def build(values):
            family = GaugeMetricFamily(name, doc, labels=[label])
            for key, value in sorted(values.items()):
                if keep is None or key in keep:
                    family.add_metric([key], value)
            return family

        return build

    return [
        (
            "outbox_backlog",
            ops.outbox_backlog,
            one(
                "clearhouse_outbox_backlog",
                "Intents committed but not yet relayed to the first queue",
            ),
        ),
        (
            "oldest_processing_age",
            ops.oldest_processing_age,
            labelled(
                "clearhouse_oldest_processing_age_seconds",
                "Seconds the oldest processing intent has waited at each stage (0: none)",
                "stage",
            ),
        ),
        (
            "webhook_deliveries_pending",
            ops.webhook_deliveries_pending,
            one(
                "clearhouse_webhook_deliveries_pending",
                "Webhook deliveries not yet delivered nor given up (first attempts and retries)",
            ),
        ),
        (
            "settlement_lag",
            ops.settlement_lag,
            labelled(
                "clearhouse_settlement_lag_seconds",
                "Seconds since the oldest succeeded, unsettled intent succeeded, per priority",
                "priority",
            ),
        ),
        (
            "beat_job_last_success",
            ops.beat_jobs_last_success,
            labelled(
                "clearhouse_beat_job_last_success_timestamp_seconds",
                "Unix time of the last successful run of each periodic job (beat entry name)",
                "job",
                keep=jobs,
            ),
        ),
    ]


class PostgresGauges:
    """The gauges read from Postgres at scrape time, one connection per scrape.

    The connection is in autocommit with a short statement timeout: a statement
    that fails or times out leaves its family out of this scrape (counted) and
    the next one runs. Postgres unreachable: every family is left out.
    """

    def __init__(self, engine, jobs=None, errors=None):
        self._engine = engine
        self._families = _families(None if jobs is None else frozenset(jobs))
        self._errors = errors or CollectErrors()

    @property
    def sources(self) -> list[str]:
        return [source for source, _, _ in self._families]

    def collect(self):
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception as exc:
            for source in self.sources:
                self._errors.failed(source, exc)
            return
        out = []
        with conn:
            for source, read, build in self._families:
                try:
                    out.append(build(read(conn)))
                except Exception as exc:
                    self._errors.failed(source, exc)
                else:
                    self._errors.ok(source)
        yield from out


def collector_engine(database_url: str):
    """An engine of its own for the collector: no pool (nothing is held between scrapes,
    nothing is inherited half-used by the workers the master forks), short timeouts."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from shared.db.engine import options

    return create_engine(
        database_url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": COLLECT_CONNECT_TIMEOUT_S,
            "options": options(COLLECT_DB_TIMEOUTS),
            "application_name": "clearhouse-metrics",
        },
    )


def operator_registry(settings, *, engine=None, redis_client=None):
    """The operator port's registry: every API worker's samples and the scrape-time gauges."""
    import redis

    from workers.schedule import beat_schedule

    engine = engine or collector_engine(settings.database_url)
    redis_client = redis_client or redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=1, socket_timeout=1
    )
    errors = CollectErrors()
    pg = PostgresGauges(engine, jobs=beat_schedule(settings), errors=errors)
    depth = QueueDepth(None, errors=errors, reader=queues_mod.reader(settings, redis_client))
    errors.expect([depth.SOURCE, *pg.sources])  # each shown, at 0 until it fails
    return metrics.registry(depth, pg, errors)


def serve_operator_port(settings, **collaborators):
    """Serve the operator registry on METRICS_PORT in a thread; the server, or None.

    Called by the gunicorn master once it listens (deploy/gunicorn.conf.py).
    A port that cannot be bound is logged, never fatal: payments go on.
    """
    if settings.metrics_port <= 0:
        log.info("metrics port disabled (METRICS_PORT=0)")
    return metrics.serve(
        "API",
        settings.metrics_port,
        settings.metrics_addr,
        lambda: operator_registry(settings, **collaborators),
        log,
    )
