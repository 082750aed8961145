"""Seal the ledger per UTC day into a hash chain, and verify every seal.

Sealing runs off the hot path (the daily report job): payments never wait
for the chain. Only days that have ended are sealed, and only once no
transaction begun before the day's end is still open: ``created_at`` is the
inserting transaction's start time, so such a transaction is the only way a
transfer dated on a day could appear after that day was sealed. Days are
sealed in order, each chained from the previous seal (the first from 64
zeros), so a seal covers everything before it.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select, text

from shared.db.tables import ledger_seals
from shared.db.uow import UnitOfWork
from shared.domain import hashchain as hc

# pg_advisory_xact_lock key: one sealer at a time ("clhseal").
SEAL_LOCK_KEY = 0x636C_6873_6561_6C
# hashchain.canonical_text in SQL: Postgres formats, Python only quotes and
# hashes (tests check both paths agree). NUMERIC(38,0)::text has no decimals.
_UTC = """to_char(t.{} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
COLUMNS = ", ".join(
    f"{_UTC.format(c) if c.endswith('_at') else f't.{c}::text'} AS {c}" for c in hc.FIELDS
)


class NotSealable(Exception):
    """The day cannot be sealed yet (it has not ended, or writers may still add to it)."""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC day as [start, end)."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def day_ended(uow: UnitOfWork, day: date) -> bool:
    """Whether ``day`` (UTC) is over by the database's clock."""
    return uow.conn.execute(select(func.now())).scalar() >= day_bounds(day)[1]


def why_not_sealable(uow: UnitOfWork, day: date) -> str | None:
    """Why ``day`` cannot be sealed now, or None if it can."""
    _, end = day_bounds(day)
    if not day_ended(uow, day):
        return f"{day} has not ended"
    # Other roles' xact_start is hidden (NULL) without pg_read_all_stats: every
    # writer of the ledger is the app role (shared/db/roles.py), as the sealer is.
    open_ = uow.conn.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND xact_start < :end"
        ),
        {"end": end},
    ).scalar()
    if open_:
        return f"{open_} transaction(s) begun before the end of {day} are still open"
    return None


def seal_day(uow: UnitOfWork, day: date) -> list[date]:
    """Seal ``day`` and every unsealed day before it; return the days sealed now.

    Idempotent: a sealed day is left as is. The chain begins on the day of the
    first transfer (or ``day`` if earlier), so no transfer is ever left out.
    """
    uow.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEAL_LOCK_KEY})
    last = uow.conn.execute(
        select(ledger_seals).order_by(ledger_seals.c.day.desc()).limit(1)
    ).first()
    if last is not None and day <= last.day:
        return []
    reason = why_not_sealable(uow, day)
    if reason:
        raise NotSealable(reason)
    if last is None:
        first_day = uow.conn.execute(text("SELECT min(created_at) FROM ledger_transfers")).scalar()
        start = min(day, first_day.astimezone(UTC).date()) if first_day else day
        prev = hc.GENESIS
    else:
        start, prev = last.day + timedelta(days=1), last.seal_hash
    sealed = []
    while start <= day:
        prev = _seal_one(uow, start, prev)
        sealed.append(start)
        start += timedelta(days=1)
    return sealed


class _Chain:
    """The file COPY ... TO STDOUT writes to: chains each row as it arrives.

    Postgres formats the rows while this process hashes them (a cursor's
    batches would take turns), and no row object is made. ``entries``, when
    given, gets a ``transfer_id<TAB>hash`` line per row: COPY FROM's input.
    """

    def __init__(self, prev_hash: str, entries=None):
        self.digest = bytes.fromhex(prev_hash)
        self.first = self.last = None
        self.count = 0
        self._entries = entries

    def write(self, row: bytes) -> None:
        row = row[:-1]  # the newline
        self.digest = hashlib.sha256(self.digest + hc.copy_row_bytes(row)).digest()
        tid = row[: row.index(b"\t")]
        if self.first is None:
            self.first = int(tid)
        self.last = tid
        self.count += 1
        if self._entries is not None:
            self._entries.write(b"%s\t%s\n" % (tid, self.digest.hex().encode()))


def day_chain(uow: UnitOfWork, day: date, prev_hash: str, entries=None):
    """Chain ``day``'s transfers from ``prev_hash``: (first id, last id, count, last hash).

    The rows come by COPY, as canonical text (``COLUMNS``), in id order;
    ``entries`` (a binary file) gets each link as a ``transfer_id<TAB>hash`` line.
    """
    return _day_chain(uow.conn.connection.dbapi_connection, day, prev_hash, entries)


def _day_chain(dbapi_conn, day: date, prev_hash: str, entries=None):
    start, end = day_bounds(day)
    chain = _Chain(prev_hash, entries)
    with dbapi_conn.cursor() as cur:
        query = cur.mogrify(
            f"SELECT {COLUMNS} FROM ledger_transfers t"
            " WHERE t.created_at >= %(start)s AND t.created_at < %(end)s ORDER BY t.id",
            {"start": start, "end": end},
        ).decode()
        cur.copy_expert(f"COPY ({query}) TO STDOUT", chain)
    last = None if chain.last is None else int(chain.last)
    last_hash = chain.digest.hex() if chain.count else prev_hash
    return chain.first, last, chain.count, last_hash


def recompute_seal(uow: UnitOfWork, day: date, prev_hash: str) -> str:
    """The seal ``day`` would get now, from the ledger as it is, chained from ``prev_hash``."""
    return hc.seal_hash(prev_hash, day, *day_chain(uow, day, prev_hash))


def _seal_one(uow: UnitOfWork, day: date, prev_hash: str) -> str:
    first, last, count, h = _chain_and_store(uow, day, prev_hash)
    seal = hc.seal_hash(prev_hash, day, first, last, count, h)
    uow.conn.execute(
        ledger_seals.insert().values(
            day=day,
            first_transfer_id=first,
            last_transfer_id=last,
            entry_count=count,
            prev_hash=prev_hash,
            seal_hash=seal,
        )
    )
    return seal


def _chain_and_store(uow: UnitOfWork, day: date, prev_hash: str):
    """``day_chain`` with every link stored in ``ledger_entry_hashes`` as it is made.

    The day is read on a second connection, in this transaction's snapshot,
    while this one COPYs the links in: Postgres formats rows in one backend
    and indexes links in another while this process hashes, instead of the
    three taking turns (a 1,000,000-intent day: 3.25M links). The links are
    still written by this transaction, so they commit with the seal or not at all.

    A snapshot holds no change of its own exporter: the sealing transaction
    must not itself write ``ledger_transfers``. None does: the ledger is
    appended to by the pipeline's transactions, each dated by its own start.
    """
    snapshot = uow.conn.execute(text("SELECT pg_export_snapshot()")).scalar()
    pipe = _Pipe()
    result: list = []

    def read_day() -> None:
        raw = None
        try:
            raw = uow.conn.engine.raw_connection()
            with raw.cursor() as cur:
                # Before any query of the transaction psycopg2 has just begun.
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            result.append(_day_chain(raw.dbapi_connection, day, prev_hash, pipe))
            raw.rollback()
            pipe.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the writer, raised there
            if raw is not None:
                raw.invalidate()  # it may be mid-COPY: never back to the pool
            pipe.fail(exc)
        finally:
            if raw is not None:
                raw.close()

    reader = threading.Thread(target=read_day, name=f"seal-read-{day}", daemon=True)
    reader.start()
    try:
        _copy_links_in(uow, pipe)
    except BaseException as exc:
        pipe.abandon()
        reader.join()
        pipe.raise_failure(exc)
        raise
    reader.join()
    pipe.raise_failure()
    return result[0]


def _copy_links_in(uow: UnitOfWork, links) -> None:
    with uow.conn.connection.dbapi_connection.cursor() as cur:
        # COPY, not INSERTs: a busy day has millions of entries.
        cur.copy_expert("COPY ledger_entry_hashes (transfer_id, hash) FROM STDIN", links)


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class _Abandoned(Exception):
    """The writer has stopped: the reader's COPY is ended by raising this in its write()."""


class _Pipe:
    """Links from the reading thread to the writing COPY, in chunks, bounded.

    ``write`` (the reader's side) gathers lines into chunks of ``CHUNK`` bytes;
    ``read`` (COPY FROM's side) returns one chunk at a time and ``b""`` at the
    end. At most ``DEPTH`` chunks wait, so memory stays flat on any day. A
    failed reader ends the COPY with its error; a failed writer ends the read.
    """

    CHUNK = 1 << 18
    DEPTH = 16

    def __init__(self):
        self._chunks: queue.Queue = queue.Queue(self.DEPTH)
        self._buf = bytearray()
        self._abandoned = threading.Event()
        self._failure: BaseException | None = None

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= self.CHUNK:
            self._put(bytes(self._buf))
            self._buf.clear()

    def close(self) -> None:
        if self._buf:
            self._put(bytes(self._buf))
            self._buf.clear()
        self._put(b"")

    def fail(self, exc: BaseException) -> None:
        if not isinstance(exc, _Abandoned):
            self._failure = exc
            with contextlib.suppress(_Abandoned):
                self._put(_Failed(exc), wait=False)

    def abandon(self) -> None:
        self._abandoned.set()

    def read(self, size: int = -1) -> bytes:
        item = self._chunks.get()
        if isinstance(item, _Failed):
            raise item.exc
        return item

    def raise_failure(self, cause: BaseException | None = None) -> None:
        """Raise the reader's error, if it had one (the writer's own error as its cause)."""
        if self._failure is not None and self._failure is not cause:
            raise self._failure from cause

    def _put(self, item, wait: bool = True) -> None:
        while True:
            if self._abandoned.is_set():
                raise _Abandoned()
            try:
                self._chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                if not wait:
                    # The writer is gone or will read: make room for the failure.
                    with contextlib.suppress(queue.Empty):
                        self._chunks.get_nowait()
