"""The outbox relay: moves committed intents from Postgres to the first queue.

One small process. It sleeps on LISTEN until an insert commits (or a poll
interval passes, in case a notification was missed), lingers a few
milliseconds so that what arrived together travels together, then claims
and publishes in batches of ``batch_max``. Several relays may run: SKIP
LOCKED gives each intent to exactly one.
"""

from __future__ import annotations

import logging
import select
import signal
import threading
import time

import psycopg2

from shared.config import Settings, get_settings
from shared.db.engine import get_engine
from shared.db.uow import UnitOfWork
from shared.observability import context
from shared.observability import logging as jsonlog
from shared.services import outbox

log = logging.getLogger("clearhouse.relay")
POLL_S = 1.0


def relay_once(engine, batch_max: int, dispatch) -> int:
    """Send everything unsent now; return how many intents went."""
    sent = 0
    while True:
        with UnitOfWork(engine) as uow:
            claimed = outbox.claim(uow.conn, batch_max)
            uow.commit()
        if claimed:
            # A lone intent carries its request id into the tasks' logs; a
            # batch of many requests has no single one to carry.
            context.clear()
            if len(claimed) == 1:
                context.bind(request_id=claimed[0][1])
            dispatch("limits", [intent_id for intent_id, _ in claimed])
            sent += len(claimed)
        if len(claimed) < batch_max:
            return sent


def run(settings: Settings, stop: threading.Event) -> None:
    """Relay until ``stop`` is set."""
    from workers.dispatch import dispatch

    engine = get_engine(settings.database_url)
    listener = _listen(engine)
    linger = settings.batch_interval_ms / 1000
    log.info("relay: listening on %s", outbox.CHANNEL)
    while not stop.is_set():
        try:
            relay_once(engine, settings.batch_max, dispatch)
        except Exception:
            # Postgres or Redis away: keep trying; nothing is lost meanwhile.
            log.exception("relay: pass failed; retrying")
            stop.wait(1.0)
        if select.select([listener], [], [], POLL_S)[0]:
            listener.poll()
            listener.notifies.clear()
            time.sleep(linger)


def _listen(engine):
    args = engine.url.translate_connect_args(username="user", database="dbname")
    conn = psycopg2.connect(**args)
    conn.autocommit = True
    conn.cursor().execute(f"LISTEN {outbox.CHANNEL}")
    return conn


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
