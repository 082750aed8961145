"""Verify the ledger's hash chain: every seal, and every sealed entry again."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select, text

from shared.db.tables import ledger_seals
from shared.db.uow import UnitOfWork
from shared.domain import hashchain as hc
from shared.services.seals import COLUMNS, day_bounds


@dataclass(frozen=True)
class Verification:
    problems: list[str]
    seals: int
    entries: int
    unsealed: int


# A day's transfers beside the hashes sealed for it; a hash whose transfer is
# gone belongs to the seal whose id range holds it. Read by COPY, so its
# parameters are psycopg2's (mogrify binds them).
_VERIFY_DAY = f"""
WITH t AS (
    SELECT t.id AS transfer_id, {COLUMNS} FROM ledger_transfers t
    WHERE t.created_at >= %(start)s AND t.created_at < %(end)s
),
h AS (
    SELECT h.transfer_id, h.hash FROM ledger_entry_hashes h
    LEFT JOIN ledger_transfers x ON x.id = h.transfer_id
    WHERE h.transfer_id BETWEEN %(first)s AND %(last)s
      AND (x.id IS NULL OR (x.created_at >= %(start)s AND x.created_at < %(end)s))
)
SELECT t.*, coalesce(t.transfer_id, h.transfer_id) AS tid,
    t.transfer_id IS NOT NULL AS present, h.hash
FROM t FULL JOIN h ON h.transfer_id = t.transfer_id ORDER BY tid
"""


def verify(uow: UnitOfWork, since: date | None = None, fresh=()) -> Verification:
    """Recompute every entry hash and seal; name each altered, missing or extra transfer.

    Days before ``since``, and ``fresh`` days (sealed in this transaction), get
    their seals checked (links, seal hashes over the recorded entry hashes)
    but their entries are not re-hashed.
    """
    problems: list[str] = []
    prev, prev_day, entries = hc.GENESIS, None, 0
    seals = uow.conn.execute(select(ledger_seals).order_by(ledger_seals.c.day)).all()
    for s in seals:
        if s.prev_hash != prev:
            problems.append(f"seal {s.day} altered: does not follow the seal before it")
        if prev_day is not None and s.day != prev_day + timedelta(days=1):
            problems.append(f"seal {s.day}: days missing after {prev_day}")
        if (since is not None and s.day < since) or s.day in fresh:
            count, last_hash = s.entry_count, _recorded_hash(uow, s)
        else:
            count, last_hash = _verify_day(uow, s, problems)
        entries += count
        expected = hc.seal_hash(
            s.prev_hash, s.day, s.first_transfer_id, s.last_transfer_id, count, last_hash
        )
        if count != s.entry_count:
            problems.append(f"seal {s.day}: {count} entries on record, {s.entry_count} sealed")
        elif expected != s.seal_hash:
            problems.append(f"seal {s.day} altered: seal hash mismatch")
        prev, prev_day = s.seal_hash, s.day
    if seals:
        first_start, _ = day_bounds(seals[0].day)
        for (tid,) in uow.conn.execute(
            text("SELECT id FROM ledger_transfers WHERE created_at < :s ORDER BY id"),
            {"s": first_start},
        ):
            problems.append(f"transfer {tid} extra: dated before the first seal")
        _, last_end = day_bounds(seals[-1].day)
    else:
        last_end = datetime.min.replace(tzinfo=UTC)
    unsealed = uow.conn.execute(
        text("SELECT count(*) FROM ledger_transfers WHERE created_at >= :e"), {"e": last_end}
    ).scalar()
    return Verification(problems, len(seals), entries, unsealed)


def _recorded_hash(uow: UnitOfWork, seal) -> str:
    if not seal.entry_count:
        return seal.prev_hash
    found = uow.conn.execute(
        text("SELECT hash FROM ledger_entry_hashes WHERE transfer_id = :i"),
        {"i": seal.last_transfer_id},
    ).scalar()
    return found or ""


class _DayCheck:
    """The file COPY of ``_VERIFY_DAY`` writes to: checks each row as it arrives.

    A row: the transfer's id, its canonical text (``COLUMNS``), then tid,
    present and the recorded hash, tab-separated (COPY text format). The
    canonical fields hold no raw tab (COPY escapes it), so they are the row's
    second to twelfth fields.
    """

    def __init__(self, seal, problems: list[str]):
        self.seal, self.problems = seal, problems
        self.digest, self.count = bytes.fromhex(seal.prev_hash), 0
        self.hash = seal.prev_hash

    def write(self, row: bytes) -> None:
        parts = row[:-1].split(b"\t")
        n = len(hc.FIELDS)
        tid, present, stored = parts[n + 1].decode(), parts[n + 2] == b"t", parts[n + 3]
        if stored == b"\\N":
            self.problems.append(f"transfer {tid} extra: dated {self.seal.day} but not in its seal")
            return
        self.count += 1
        if not present:
            self.problems.append(
                f"transfer {tid} missing: sealed on {self.seal.day}, gone from the ledger"
            )
        else:
            data = hc.copy_row_bytes(b"\t".join(parts[1 : n + 1]))
            if hashlib.sha256(self.digest + data).digest().hex().encode() != stored:
                self.problems.append(f"transfer {tid} altered: hash mismatch")
        # Go on from the recorded hash, so one changed entry is named once.
        self.hash = stored.decode()
        self.digest = bytes.fromhex(self.hash)


def _verify_day(uow: UnitOfWork, seal, problems: list[str]) -> tuple[int, str]:
    start, end = day_bounds(seal.day)
    params = {
        "start": start,
        "end": end,
        "first": seal.first_transfer_id or 0,
        "last": seal.last_transfer_id or -1,
    }
    check = _DayCheck(seal, problems)
    with uow.conn.connection.dbapi_connection.cursor() as cur:
        query = cur.mogrify(_VERIFY_DAY, params).decode()
        cur.copy_expert(f"COPY ({query}) TO STDOUT", check)
    return check.count, check.hash
