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
import time

from sqlalchemy import Engine, create_engine, event, exc

from shared.db.faults import Outage

log = logging.getLogger("clearhouse.db")
KINDS = ("api", "worker", "report")

CONNECT_TIMEOUT_S = 3
# A pooled connection idle longer than this is pinged at checkout (see _create).
PING_AFTER_IDLE_S = 0.25

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
        # Pings at checkout are ours (_ping_if_idle below), not pool_pre_ping's.
        pool_pre_ping=False,
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
        record.info["idle_since"] = time.monotonic()  # just made: no ping needed
        if outage.down:
            outage.recovered()

    # A pooled connection that died with the server (restart, failover) is
    # replaced at checkout, so no request or task fails on a stale connection
    # once Postgres is back. pool_pre_ping did that with a round trip per
    # checkout: five per payment, about one statement in eight the database
    # ran (make bench). Only a connection idle for PING_AFTER_IDLE_S is pinged
    # now: one used a moment ago cannot have outlived a restart unnoticed,
    # because a restart takes longer than that, and a connection used while
    # the server was away failed its statement, which invalidated the pool
    # (SQLAlchemy recycles every older connection at its next checkout).
    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, proxy):
        since = record.info.get("idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            # The dialect's ping (psycopg2: SELECT 1 in autocommit, so it
            # opens no transaction), as pool_pre_ping would send it.
            engine.dialect.do_ping(dbapi_conn)
        except Exception as error:
            # The pool discards this connection and checks out a fresh one.
            raise exc.DisconnectionError(f"stale pooled connection: {error}") from error

    return engine


def dispose_engines() -> None:
    """Drop pooled connections inherited over fork (gunicorn, Celery prefork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()
