"""The offline queue's SQLite file (WAL), one connection per thread (the caller's threads
and the background drainer's).

A new item is committed with ``synchronous=FULL``: ``submit`` returns only once it is on
disk, so not even a power cut loses a payment the caller was told is queued. A change of
state is committed with ``synchronous=NORMAL`` (no fsync of its own): it survives the
process dying at any point, and a power cut can only roll an item back to an earlier
state, which sends it again under the same Idempotency-Key: the API answers with what it
made the first time.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATES = ("queued", "sending", "acknowledged", "rejected")
PENDING = ("queued", "sending")

SCHEMA = """
CREATE TABLE IF NOT EXISTS offline_items (
    local_id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    -- The request body; NULL once answered: it may hold a card number.
    params TEXT,
    summary TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'acknowledged', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0,
    intent_id TEXT,
    problem TEXT,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (client_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS offline_items_pending ON offline_items (client_id, state, local_id);
"""


@dataclass(frozen=True)
class OfflineItem:
    """One queued payment and what became of it."""

    local_id: int
    state: str  # queued | sending | acknowledged | rejected
    idempotency_key: str
    summary: dict[str, Any]  # amount, currency, payment method type and last 4
    attempts: int
    intent_id: str | None  # acknowledged: the intent the API made
    problem: dict[str, Any] | None  # rejected: the API's problem+json
    last_error: str | None  # the last attempt that got no final answer
    created: float
    updated: float
    params: dict[str, Any] | None = field(default=None, repr=False)


def _private_file(path: Path) -> None:
    """Create ``path`` (and its folder) readable by this user only, before SQLite opens it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


class Store:
    def __init__(self, path: str | os.PathLike, client_id: str):
        self.path = Path(path).expanduser()
        self.client_id = client_id
        self._ready = False
        self._local = threading.local()

    @contextlib.contextmanager
    def _connect(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """This thread's connection, kept open: closing the last connection to a WAL file
        checkpoints it (an fsync of the database), which would cost every call one."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self._ready:
                _private_file(self.path)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            if not self._ready:
                conn.executescript(SCHEMA)
                self._ready = True
            self._local.conn = conn
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        yield conn

    def close(self) -> None:
        """Close this thread's connection (the next call opens another)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    @contextlib.contextmanager
    def _transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._connect(durable) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def add(self, key: str, params: dict, summary: dict) -> int:
        now = time.time()
        try:
            with self._transaction(durable=True) as conn:
                cursor = conn.execute(
                    "INSERT INTO offline_items (client_id, idempotency_key, params, summary,"
                    " state, created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                    (self.client_id, key, json.dumps(params), json.dumps(summary), now, now),
                )
                return int(cursor.lastrowid)
        except sqlite3.IntegrityError:
            return self._same_again(key, params, summary)

    def _same_again(self, key: str, params: dict, summary: dict) -> int:
        """A key queued before: its item if this is the same payment (answered items keep only
        their summary), else ValueError, as the API's 422 for a key reused."""
        (item,) = self._select("idempotency_key = ?", (key,))
        if item.params == params or (item.params is None and item.summary == summary):
            return item.local_id
        raise ValueError(f"idempotency_key {key!r} is already queued for another payment")

    def next_pending(self) -> OfflineItem | None:
        """The oldest item not yet answered (first in, first out)."""
        rows = self._select("state IN ('queued', 'sending')", limit=1)
        return rows[0] if rows else None

    def items(self, states: tuple[str, ...] = STATES) -> list[OfflineItem]:
        marks = ", ".join("?" * len(states))
        return self._select(f"state IN ({marks})", tuple(states))

    def count_pending(self) -> int:
        with self._connect() as conn:
            sql = "SELECT count(*) FROM offline_items WHERE client_id = ? AND state IN (?, ?)"
            return conn.execute(sql, (self.client_id, *PENDING)).fetchone()[0]

    def mark_sending(self, local_id: int) -> None:
        self._update(local_id, "state = 'sending', attempts = attempts + 1")

    def mark_unsent(self, local_id: int, error: str) -> None:
        self._update(local_id, "state = 'queued', last_error = ?", error)

    def mark_acknowledged(self, local_id: int, intent_id: str) -> None:
        self._update(
            local_id,
            "state = 'acknowledged', intent_id = ?, params = NULL, last_error = NULL",
            intent_id,
        )

    def mark_rejected(self, local_id: int, problem: dict) -> None:
        self._update(
            local_id, "state = 'rejected', problem = ?, params = NULL", json.dumps(problem)
        )

    def purge(self) -> int:
        """Delete this client's answered items; how many."""
        with self._transaction() as conn:
            sql = "DELETE FROM offline_items WHERE client_id = ? AND state IN (?, ?)"
            return conn.execute(sql, (self.client_id, "acknowledged", "rejected")).rowcount

    def _update(self, local_id: int, assignments: str, *values: Any) -> None:
        with self._transaction() as conn:
            conn.execute(
                f"UPDATE offline_items SET {assignments}, updated_at = ?"  # noqa: S608
                " WHERE local_id = ? AND client_id = ?",
                (*values, time.time(), local_id, self.client_id),
            )

    def _select(self, where: str, values: tuple = (), limit: int | None = None):
        sql = f"SELECT * FROM offline_items WHERE client_id = ? AND {where} ORDER BY local_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as conn:
            return [_item(r) for r in conn.execute(sql, (self.client_id, *values))]


def _item(row: sqlite3.Row) -> OfflineItem:
    loads = lambda v: json.loads(v) if v is not None else None  # noqa: E731
    return OfflineItem(
        local_id=row["local_id"],
        state=row["state"],
        idempotency_key=row["idempotency_key"],
        summary=loads(row["summary"]),
        attempts=row["attempts"],
        intent_id=row["intent_id"],
        problem=loads(row["problem"]),
        last_error=row["last_error"],
        created=row["created_at"],
        updated=row["updated_at"],
        params=loads(row["params"]),
    )
