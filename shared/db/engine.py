"""One SQLAlchemy engine per process, database URL and kind of connection.

Each kind gets its own Postgres timeouts (the solo-pool workers enforce no
Celery time limit, so the database must bound every statement):

- ``api``: a request is answered in milliseconds or not at all;
- ``worker``: stage batches, webhooks and beat jobs;
- ``report``: daily reports and seals, which scan a whole day.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, create_engine, event

from shared.db.faults import Outage

log = logging.getLogger("clearhouse.db")
KINDS = ("api", "worker", "report")

CONNECT_TIMEOUT_S = 3

_engines: dict[tuple[str, str], Engine] = {}
_lock = threading.Lock()
# One per process: every engine reports to it, so an outage logs one line.
outage = Outage("postgres", log)


def options(timeouts: tuple[int, int, int]) -> str:
    """libpq ``options`` setting the session timeouts at connect (no extra round trip)."""
    statement, lock, idle = timeouts
    return (
        f"-c statement_timeout={int(statement)} -c lock_timeout={int(lock)}"
        f" -c idle_in_transaction_session_timeout={int(idle)}"
    )


def get_engine(url: str, kind: str, timeouts: tuple[int, int, int]) -> Engine:
    """Return this process's engine for ``url`` and ``kind``, creating it on first use.

    ``timeouts`` are the caller's settings' ``db_timeouts(kind)``; they apply when
    the engine is created (the first call for this ``url`` and ``kind``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of connection {kind!r}")
    with _lock:
        engine = _engines.get((url, kind))
        if engine is None:
            engine = _create(url, timeouts)
            _engines[(url, kind)] = engine
        return engine


def _create(url: str, timeouts: tuple[int, int, int]) -> Engine:
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        # A pooled connection that died with the server (restart, failover)
        # is replaced at checkout, so no request or task fails on a stale
        # connection once Postgres is back. One cheap round trip per checkout.
        pool_pre_ping=True,
        pool_recycle=1800,
        # Batch executemany UPDATEs into pages (one round trip per page, not
        # per row): stages update whole batches of intents.
        executemany_mode="values_plus_batch",
        # A statement's parameters hold card tokens and customers' data: never
        # in an error's text, so never in a logged traceback either.
        hide_parameters=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "options": options(timeouts)},
    )

    @event.listens_for(engine, "connect")
    def _connected(dbapi_conn, record):
        # A new server connection: if we were in an outage, it is over.
        if outage.down:
            outage.recovered()

    return engine


def dispose_engines() -> None:
    """Drop pooled connections inherited over fork (gunicorn, Celery prefork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()
