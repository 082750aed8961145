"""HTTP request metrics, the queue-depth collector and the /metrics exposition."""

from __future__ import annotations

import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from shared.observability import metrics, queues
from workers.topology import QUEUES

log = logging.getLogger(__name__)


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


class QueueDepth:
    """``clearhouse_queue_depth{queue}``: LLEN of every Celery queue, read at scrape time."""

    def __init__(self, redis_client, queues=None, key_prefix: str = ""):
        self._redis = redis_client
        self._queues = queues
        self._prefix = key_prefix  # REDIS_KEY_PREFIX: kombu's global_keyprefix

    def collect(self):
        if self._queues is None:
            self._queues = QUEUES
        family = GaugeMetricFamily(
            "clearhouse_queue_depth", "Messages waiting in each Celery queue", labels=["queue"]
        )
        try:
            depth = queues.depths(self._redis, self._prefix, self._queues)
        except Exception as exc:
            # A scrape must still answer when Redis is away (/ready says so).
            log.warning("queue depth unavailable: %s", exc)
            return
        for q, n in depth.items():
            family.add_metric([q], n)
        yield family


class MetricsResource:
    def __init__(self, redis_client=None, queues=None, key_prefix: str = ""):
        self._queues = None
        if redis_client is not None:
            self._queues = CollectorRegistry(auto_describe=False)
            self._queues.register(QueueDepth(redis_client, queues, key_prefix))

    def on_get(self, req, resp) -> None:
        # Under gunicorn this aggregates every worker's files (multiprocess mode).
        body = generate_latest(metrics.registry())
        if self._queues is not None:
            body += generate_latest(self._queues)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = body
