"""Unit of work: one transaction, rolled back unless committed.

Resources, tasks and scheduler jobs all use it. Work that must only happen
once the rows are visible to others (enqueueing the next step) is recorded
with ``enqueue_after_commit(conn, step, ids)`` from anywhere that holds the
connection, and sent by ``commit()`` after a successful commit, never before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)
_PENDING = "clearhouse.enqueue_after_commit"

Dispatch = Callable[[str, list[str]], None]


def enqueue_after_commit(conn: Connection, step: str, ids) -> None:
    """Ask for ``ids`` to be sent to ``step`` once this transaction commits."""
    ids = list(ids)
    if ids:
        conn.info.setdefault(_PENDING, []).append((step, ids))


class UnitOfWork:
    def __init__(self, engine: Engine, dispatch: Dispatch | None = None):
        self._engine = engine
        self._dispatch = dispatch
        self.conn: Connection | None = None
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        self.conn = self._engine.connect()
        # conn.info outlives this checkout (it belongs to the pooled DBAPI
        # connection): start clean so nothing leaks in from an earlier user.
        self.conn.info.pop(_PENDING, None)
        self._tx = self.conn.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self._committed and (self._tx.is_active or self.conn.invalidated):
                self._tx.rollback()
        except Exception:
            # The server is gone (restart, network): never hand this
            # connection back to the pool; the next unit of work gets a new one.
            if exc is None:
                raise
            log.debug("rollback after %s failed; discarding the connection", exc_type.__name__)
            self.conn.invalidate()
        finally:
            self.conn.info.pop(_PENDING, None)
            self.conn.close()

    def execute(self, statement, params=None):
        if params is None:
            return self.conn.execute(statement)
        return self.conn.execute(statement, params)

    def commit(self) -> None:
        enqueue = self.conn.info.pop(_PENDING, [])
        self._tx.commit()
        self._committed = True
        if not enqueue:
            return
        try:
            self._send(enqueue)
        except Exception:
            # The rows are committed; the scheduler's re-drive (and the
            # webhook dispatcher) will pick the work up again, so a failed
            # enqueue must not fail work that already succeeded.
            log.exception("enqueue after commit failed; the scheduler will recover it")

    def _send(self, enqueue) -> None:
        if self._dispatch is None:
            log.warning("no dispatcher: %d enqueue requests left to the scheduler", len(enqueue))
            return
        for step, ids in enqueue:
            self._dispatch(step, ids)
