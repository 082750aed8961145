"""A sandbox bank's books: accounts and two-phase transactions in one SQLite file (WAL).

Amounts are Python ints stored as decimal text (SQLite's INTEGER is 64 bits; ETH's
minor units are not). Every change runs in ``BEGIN IMMEDIATE``: one writer at a time,
so a debit's funds check and its reservation cannot interleave with another's.

A transaction's states: prepared -> committed | aborted. A refused Prepare is stored
as aborted with its reason, and an Abort of an unknown tx_id leaves an aborted
tombstone, so a Prepare arriving after its Abort is refused (the coordinator gave up
on it) and every call gives the same answer when repeated.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PREPARED, COMMITTED, ABORTED = "prepared", "committed", "aborted"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance TEXT NOT NULL DEFAULT '0',
    reserved TEXT NOT NULL DEFAULT '0'
);
CREATE TABLE IF NOT EXISTS txs (
    tx_id TEXT PRIMARY KEY,
    account TEXT,
    amount TEXT,
    currency TEXT,
    is_credit INTEGER,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    prepared_at REAL NOT NULL,
    changed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_txs_prepared ON txs (prepared_at) WHERE state = 'prepared';
"""


class NoSuchAccount(LookupError):
    pass


@dataclass(frozen=True)
class Answer:
    ok: bool
    state: str | None  # None: the bank never saw the tx_id
    reason: str = ""
    prepared_at: float = 0.0
    changed_at: float = 0.0


class Store:
    def __init__(self, path: str | Path):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        # executescript commits on its own: no BEGIN around it.
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        # One connection per gRPC server thread: sqlite3 connections are not shared.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction survives a power cut, as a bank's must.
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self):
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # Accounts (set-up)

    def create_account(self, owner: str, currency: str) -> dict:
        """Open an empty account."""
        account = "acc_" + secrets.token_hex(8)
        with self._write() as db:
            db.execute(
                "INSERT INTO accounts (id, owner, currency) VALUES (?, ?, ?)",
                (account, owner, currency),
            )
        return self.account(account)

    def fund(self, account: str, amount: int) -> dict:
        """Credit an account outside any transaction (the sandbox's deposit)."""
        with self._write() as db:
            row = self._account(db, account)
            db.execute(
                "UPDATE accounts SET balance = ? WHERE id = ?",
                (str(int(row["balance"]) + amount), account),
            )
        return self.account(account)

    def account(self, account: str) -> dict:
        """An account's balance and what prepared debits reserve of it."""
        row = self._account(self._conn(), account)
        return {
            "account": row["id"],
            "owner": row["owner"],
            "currency": row["currency"],
            "balance": int(row["balance"]),
            "reserved": int(row["reserved"]),
        }

    def total(self) -> int:
        """The sum of every account's balance (tests audit it)."""
        rows = self._conn().execute("SELECT balance FROM accounts").fetchall()
        return sum(int(r["balance"]) for r in rows)

    @staticmethod
    def _account(db, account: str):
        row = db.execute("SELECT * FROM accounts WHERE id = ?", (account,)).fetchone()
        if row is None:
            raise NoSuchAccount(account)
        return row

    # The protocol

    def prepare(self, tx_id: str, account: str, amount: int, currency: str, is_credit: bool):
        """Reserve a debit's funds (or note a credit) under ``tx_id``; repeated: the same answer."""
        now = time.time()
        with self._write() as db:
            tx = db.execute("SELECT * FROM txs WHERE tx_id = ?", (tx_id,)).fetchone()
            if tx is not None:
                same = (tx["account"], tx["amount"], tx["currency"], bool(tx["is_credit"])) == (
                    account,
                    str(amount),
                    currency,
                    is_credit,
                )
                if tx["state"] == ABORTED:
                    return _answer(tx, ok=False, reason=tx["reason"] or "already_aborted")
                if not same:
                    return _answer(tx, ok=False, reason="conflicting_request")
                return _answer(tx, ok=True)
            reason = self._refusal(db, account, amount, currency, is_credit)
            state = ABORTED if reason else PREPARED
            db.execute(
                "INSERT INTO txs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tx_id, account, str(amount), currency, int(is_credit), state, reason, now, now),
            )
            if not reason and not is_credit:
                row = self._account(db, account)
                db.execute(
                    "UPDATE accounts SET reserved = ? WHERE id = ?",
                    (str(int(row["reserved"]) + amount), account),
                )
            return Answer(not reason, state, reason, now, now)

    @staticmethod
    def _refusal(db, account: str, amount: int, currency: str, is_credit: bool) -> str:
        row = db.execute("SELECT * FROM accounts WHERE id = ?", (account,)).fetchone()
        if row is None:
            return "no_such_account"
        if row["currency"] != currency:
            return "currency_mismatch"
        if not is_credit and int(row["balance"]) - int(row["reserved"]) < amount:
            return "insufficient_funds"
        return ""

    def commit(self, tx_id: str) -> Answer:
        """Apply a prepared tx; refused when aborted or unknown."""
        return self._finish(tx_id, COMMITTED)

    def abort(self, tx_id: str) -> Answer:
        """Release a prepared tx (a tombstone if unknown); refused when committed."""
        return self._finish(tx_id, ABORTED)

    def _finish(self, tx_id: str, to: str, reason: str = "") -> Answer:
        now = time.time()
        with self._write() as db:
            tx = db.execute("SELECT * FROM txs WHERE tx_id = ?", (tx_id,)).fetchone()
            if tx is None:
                if to == COMMITTED:
                    return Answer(False, None, "unknown_transaction")
                db.execute(
                    "INSERT INTO txs (tx_id, state, reason, prepared_at, changed_at)"
                    " VALUES (?, ?, 'aborted_before_prepare', ?, ?)",
                    (tx_id, ABORTED, now, now),
                )
                return Answer(True, ABORTED, "aborted_before_prepare", now, now)
            if tx["state"] == to:
                return _answer(tx, ok=True)
            if tx["state"] != PREPARED:
                return _answer(tx, ok=False, reason=f"already_{tx['state']}")
            self._apply(db, tx, to)
            db.execute(
                "UPDATE txs SET state = ?, reason = ?, changed_at = ? WHERE tx_id = ?",
                (to, reason, now, tx_id),
            )
            return Answer(True, to, reason, tx["prepared_at"], now)

    def _apply(self, db, tx, to: str) -> None:
        amount, row = int(tx["amount"]), self._account(db, tx["account"])
        balance, reserved = int(row["balance"]), int(row["reserved"])
        if tx["is_credit"]:
            balance += amount if to == COMMITTED else 0
        else:
            reserved -= amount
            balance -= amount if to == COMMITTED else 0
        db.execute(
            "UPDATE accounts SET balance = ?, reserved = ? WHERE id = ?",
            (str(balance), str(reserved), tx["account"]),
        )

    def status(self, tx_id: str) -> Answer:
        """Where ``tx_id`` stands (state None: never seen)."""
        tx = self._conn().execute("SELECT * FROM txs WHERE tx_id = ?", (tx_id,)).fetchone()
        return Answer(True, None) if tx is None else _answer(tx, ok=True)

    def expire(self, ttl_s: float) -> list[str]:
        """Abort every transaction prepared more than ``ttl_s`` ago; return their ids."""
        cutoff = time.time() - ttl_s
        rows = (
            self._conn()
            .execute(
                "SELECT tx_id FROM txs WHERE state = 'prepared' AND prepared_at < ?", (cutoff,)
            )
            .fetchall()
        )
        # One by one through abort(): it re-checks the state under the write lock.
        return [r["tx_id"] for r in rows if self._finish(r["tx_id"], ABORTED, "expired").ok]


def _answer(tx, *, ok: bool, reason: str | None = None) -> Answer:
    return Answer(
        ok,
        tx["state"],
        tx["reason"] if reason is None else reason,
        tx["prepared_at"],
        tx["changed_at"],
    )
