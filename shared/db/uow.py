"""Unit of work: one transaction, rolled back unless committed.

Resources, tasks and scheduler jobs all use it. Work that must only happen
once the rows are visible to others (enqueueing the next stage) is registered
with ``after_commit`` and runs after a successful commit, never before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)


class UnitOfWork:
    def __init__(self, engine: Engine):
        self._engine = engine
        self.conn: Connection | None = None
        self._after_commit: list[Callable[[], None]] = []
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        self.conn = self._engine.connect()
        self._tx = self.conn.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self._committed and self._tx.is_active:
                self._tx.rollback()
        finally:
            self.conn.close()

    def execute(self, statement, params=None):
        return (
            self.conn.execute(statement, params)
            if params is not None
            else self.conn.execute(statement)
        )

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transaction has committed."""
        self._after_commit.append(callback)

    def commit(self) -> None:
        self._tx.commit()
        self._committed = True
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # The rows are committed; the scheduler's re-drive will pick
                # the work up again, so a failed enqueue must not fail the
                # request that already succeeded.
                log.exception("after-commit callback failed; re-drive will recover")
