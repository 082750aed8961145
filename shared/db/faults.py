"""Which errors mean "a dependency was briefly away", and one log line per outage.

A transient error is retried (tasks) or answered 503 with Retry-After (the
API); it never fails a payment. Anything else is a bug or bad data.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import psycopg2
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa

# OperationalError covers lost connections, "the database system is starting
# up", deadlocks, serialization failures, lock and statement timeouts.
# PendingRollbackError: a connection invalidated mid-transaction and touched
# again; the unit of work discards it, the retry gets a fresh one.
TRANSIENT = (
    sa.OperationalError,
    sa.InterfaceError,
    sa.DisconnectionError,
    sa.TimeoutError,  # pool checkout timed out
    sa.PendingRollbackError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    BrokerError,
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,  # OSError family: refused, reset, broken pipe
    socket.timeout,
)


def is_transient(exc: BaseException | None) -> bool:
    """True for an error worth retrying, looking through its explicit causes.

    Only ``raise ... from`` links count (SQLAlchemy wraps driver errors that
    way): a bug raised while *handling* a transient error is still a bug, and
    retrying it would loop.
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, TRANSIENT):
            return True
        if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
            return True
        exc = exc.__cause__
        seen += 1
    return False


class Outage:
    """Log one line when a dependency goes away and one when it is back.

    Per process: during an outage every request fails the same way, and a
    traceback per request would bury everything else in the logs.
    """

    def __init__(self, name: str, log: logging.Logger):
        self.name = name
        self._log = log
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        name = type(exc).__name__
        self._log.warning("%s unavailable (%s): %s", self.name, name, _first_line(exc))

    def recovered(self) -> None:
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            took = time.monotonic() - since
            self._log.warning("%s available again after %.1f s", self.name, took)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:200] if text else ""
