"""Unit of work: one transaction, rolled back unless committed, and what follows it.

Resources, tasks, the relay, the CLI and scheduler jobs all use it, and use
cases take it instead of a bare connection. What must happen only once the
rows are visible to others goes through it and nowhere else:

- ``uow.enqueue(step, ids)``: send the ids to a pipeline step after commit;
- ``uow.on_commit(fn)``: call ``fn()`` after commit (metrics, caches).

A rollback drops both, so a batch that is retried or isolated never counts
or caches twice, and a worker never sees a message for rows it cannot read.
Commits happen here and in the task base only: callers use
``transact(new_uow, fn, ...)`` (open, run, commit) or ``Task``
(workers/base.py), which calls ``commit()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

# publish(step, ids, countdown=None): sends ids to a step (workers.publish).
Publish = Callable[..., None]
# flush(uow, items): writes what write_last gathered under one key.
Flush = Callable[["UnitOfWork", list], None]


class UnitOfWork:
    def __init__(self, engine: Engine, publish: Publish | None = None):
        self._engine = engine
        self._publish = publish
        self.conn: Connection | None = None
        self._committed = False
        self._enqueued: list[tuple[str, list[str], float | None]] = []
        self._hooks: list[Callable[[], None]] = []
        self._last: list[tuple[str, object, Flush]] = []

    def __enter__(self) -> UnitOfWork:
        self.conn = self._engine.connect()
        self._tx = self.conn.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._enqueued.clear()
        self._hooks.clear()
        self._last.clear()
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
            self.conn.close()

    def enqueue(self, step: str, ids, countdown: float | None = None) -> None:
        """Send ``ids`` to ``step`` once this transaction commits (never if it rolls back)."""
        ids = list(ids)
        if ids:
            self._enqueued.append((step, ids, countdown))

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once this transaction commits; forget it on rollback."""
        self._hooks.append(fn)

    def write_last(self, key: str, item, flush: Flush) -> None:
        """Have ``flush(uow, items)`` write ``item`` as this transaction's last statements.

        For the hottest rows (ledger balances every batch updates): a row lock is
        held until commit, so rows written just before it are locked for the
        commit alone. The items of one key are flushed together, in one call, in
        the order they came; a savepoint rolled back drops its own, a rollback
        all of them. Nothing in the transaction may read those rows back before
        commit: they are not written yet.
        """
        self._last.append((key, item, flush))

    def _write_last(self) -> None:
        groups: dict[str, tuple[Flush, list]] = {}
        for key, item, flush in self._last:
            groups.setdefault(key, (flush, []))[1].append(item)
        self._last = []
        for flush, items in groups.values():
            flush(self, items)

    def publish_now(self, step: str, ids) -> None:
        """Send ``ids`` now, inside the transaction: a failed publish raises and rolls back.

        Only for the outbox relay, whose claim must be undone when the broker
        is away; everyone else enqueues after commit.
        """
        self._require_publisher()(step, list(ids))

    @contextmanager
    def savepoint(self):
        """A nested transaction: an exception inside undoes only what it did, then propagates.

        Work enqueued and hooks registered inside are dropped with it.
        """
        nested = self.conn.begin_nested()
        marks = len(self._enqueued), len(self._hooks), len(self._last)
        try:
            yield self
        except BaseException:
            nested.rollback()
            del self._enqueued[marks[0] :], self._hooks[marks[1] :], self._last[marks[2] :]
            raise
        nested.commit()

    def commit(self) -> None:
        self._write_last()
        self._tx.commit()
        self._committed = True
        enqueued, self._enqueued = self._enqueued, []
        hooks, self._hooks = self._hooks, []
        if enqueued:
            try:
                self._send(enqueued)
            except Exception:
                # The rows are committed; the scheduler's re-drive (and the
                # webhook dispatcher) will pick the work up again, so a failed
                # enqueue must not fail work that already succeeded.
                log.exception("enqueue after commit failed; the scheduler will recover it")
        for fn in hooks:
            try:
                fn()
            except Exception:
                log.exception("an after-commit hook failed")

    def _send(self, enqueued) -> None:
        if self._publish is None:
            log.warning("no publisher: %d enqueue requests left to the scheduler", len(enqueued))
            return
        for step, ids, countdown in enqueued:
            self._publish(step, ids, countdown=countdown)

    def _require_publisher(self) -> Publish:
        if self._publish is None:
            raise RuntimeError("this unit of work has no publisher")
        return self._publish


def transact(new_uow: Callable[[], UnitOfWork], fn: Callable, *args, keep_on=(), **kwargs):
    """Run ``fn(uow, *args, **kwargs)`` in a new unit of work and commit it.

    ``keep_on``: exception types that refuse the request but must keep what
    was written before them (a reused refresh token revokes its family):
    the unit commits, then the exception propagates.
    """
    with new_uow() as uow:
        try:
            result = fn(uow, *args, **kwargs)
        except keep_on:
            uow.commit()
            raise
        uow.commit()
    return result
