"""The outbox relay: moves committed intents from Postgres to the first queue.

One small process. It sleeps on LISTEN until an insert commits (or a poll
interval passes, in case a notification was missed), lingers a few
milliseconds so that what arrived together travels together, then claims
and publishes in batches of ``batch_max``. Several relays may run: SKIP
LOCKED gives each intent to exactly one.

With each batch it also sends the first webhook deliveries of those intents'
``payment_intent.processing`` events to ``deliver_webhooks`` (one message per
batch, same transaction): the API records them without enqueuing, so a
create makes no broker round trip (shared/services/outbox.py).

It serves its own metrics on ``RELAY_METRICS_PORT`` (default 9806, 0: none):
the time of its last successful pass (a pass runs at least every second, so
an old one means the relay is stuck or cannot reach Postgres or Redis), the
intents it relayed and its failed passes.
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import threading
import time

import psycopg2

from shared.config import Settings, get_settings
from shared.db.engine import get_engine
from shared.db.uow import UnitOfWork, transact
from shared.domain.lanes import by_lane
from shared.observability import context, metrics
from shared.observability import heartbeat as hb
from shared.observability import logging as jsonlog
from shared.services import outbox

log = logging.getLogger("clearhouse.relay")
POLL_S = 1.0


class RelayStats:
    """What the relay's metrics port shows; one process, so plain numbers."""

    def __init__(self):
        self.last_pass = 0.0  # unix time of the last pass that succeeded
        self.relayed = 0
        self.failures = 0

    def passed(self, sent: int) -> None:
        self.relayed += sent
        self.last_pass = time.time()

    def failed(self) -> None:
        self.failures += 1

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        last = GaugeMetricFamily(
            "clearhouse_relay_last_pass_timestamp_seconds",
            "Unix time of the relay's last successful pass (one runs at least every second)",
        )
        if self.last_pass:
            last.add_metric([], self.last_pass)
        yield last
        yield CounterMetricFamily(
            "clearhouse_relay_intents_relayed",
            "Intents the relay handed to the first queue",
            value=self.relayed,
        )
        yield CounterMetricFamily(
            "clearhouse_relay_pass_failures",
            "Relay passes that failed (Postgres or Redis away)",
            value=self.failures,
        )


def serve_metrics(settings: Settings, stats: RelayStats):
    """Serve ``stats`` on RELAY_METRICS_PORT in a thread; the server, or None."""

    def registry():
        from prometheus_client import CollectorRegistry

        reg = CollectorRegistry(auto_describe=False)
        reg.register(stats)
        return reg

    return metrics.serve("relay", settings.relay_metrics_port, settings.metrics_addr, registry, log)


def relay_once(engine, batch_max: int, publish, alive=lambda: None) -> int:
    """Send everything unsent now; return how many intents went (``alive``: each batch)."""
    sent = 0
    while True:
        alive()
        # Publish inside the claim's transaction, commit after: a publish that
        # fails (Redis away) rolls the mark back and the next pass sends the
        # intents again, instead of leaving them marked and sent nowhere. A
        # commit lost after a publish only duplicates a message, which the
        # stages' compare-and-set ignores; a stage that gets the message
        # first waits on the row lock for this commit.
        claimed = transact(lambda: UnitOfWork(engine, publish), _relay_batch, batch_max)
        sent += claimed
        if claimed < batch_max:
            return sent


def _relay_batch(unit: UnitOfWork, batch_max: int) -> int:
    claimed = outbox.claim(unit, batch_max)
    if claimed:
        # A lone intent carries its request id into the tasks' logs; a batch
        # of many requests has no single one to carry.
        context.clear()
        if len(claimed) == 1:
            context.bind(request_id=claimed[0][1])
        # Each intent to its lane's first stage (shared/domain/lanes.py).
        lanes = by_lane("limits", [(intent_id, prio) for intent_id, _, prio in claimed])
        for step, ids in lanes.items():
            unit.publish_now(step, ids)
        # Their creation events' first webhook deliveries, which the API left
        # to us. Inside the transaction too: if this publish fails, the
        # intents are unmarked and the next pass sends both again.
        deliveries = outbox.first_deliveries(unit, [intent_id for intent_id, _, _ in claimed])
        if deliveries:
            unit.publish_now("deliver_webhooks", deliveries)
    return len(claimed)


def run(settings: Settings, stop: threading.Event, stats: RelayStats | None = None) -> None:
    """Relay until ``stop`` is set, riding out Postgres and Redis outages."""
    from workers.celery_app import publish

    stats = stats or RelayStats()
    engine = get_engine(settings.database_url, "worker", settings.db_timeouts_worker)
    listener = Listener(engine)
    heartbeat = hb.Heartbeat.from_settings(settings)
    linger = settings.batch_interval_ms / 1000
    failing = False
    server = serve_metrics(settings, stats)
    listener.connect()
    log.info("relay: listening on %s", outbox.CHANNEL)
    try:
        while not stop.is_set():
            heartbeat.beat()
            try:
                stats.passed(relay_once(engine, settings.batch_max, publish, heartbeat.beat))
                if failing:
                    log.warning("relay: passes succeed again")
                failing = False
            except Exception as exc:
                # Postgres or Redis away: keep trying; nothing is lost meanwhile.
                # One line when it starts failing, not a traceback per second.
                stats.failed()
                if not failing:
                    log.warning("relay: pass failed (%s: %s); retrying", type(exc).__name__, exc)
                failing = True
                stop.wait(1.0)
                continue
            if listener.wait(POLL_S):
                time.sleep(linger)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


class Listener:
    """LISTEN on the outbox channel; after a lost connection, poll until it is back."""

    def __init__(self, engine):
        self._args = engine.url.translate_connect_args(username="user", database="dbname")
        self._conn = None

    def connect(self) -> bool:
        try:
            conn = psycopg2.connect(connect_timeout=3, **self._args)
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {outbox.CHANNEL}")
        except psycopg2.Error as exc:
            log.warning("relay: LISTEN unavailable (%s); polling every %.0f s", exc, POLL_S)
            return False
        self._conn = conn
        return True

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a notification; True if one came."""
        if self._conn is None and not self.connect():
            time.sleep(timeout)
            return False
        try:
            if not select.select([self._conn], [], [], timeout)[0]:
                return False
            self._conn.poll()
            self._conn.notifies.clear()
            return True
        except (psycopg2.Error, OSError, ValueError) as exc:
            # The server went away under us (restart): drop the connection and
            # reconnect on the next wait. The caller's pass polls meanwhile.
            log.warning("relay: LISTEN connection lost (%s); reconnecting", type(exc).__name__)
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            return False


def main() -> None:
    settings = get_settings()
    jsonlog.configure(settings.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(settings, stop)
    log.info("relay: stopped")


if __name__ == "__main__":
    main()
