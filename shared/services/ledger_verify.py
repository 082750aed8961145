"""Verify the ledger's hash chain: every seal, and every sealed entry again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select, text

from shared.db.tables import ledger_seals
from shared.db.uow import UnitOfWork
from shared.domain import hashchain as hc
from shared.services.seals import COLUMNS, DAY_FILTER, day_bounds


@dataclass(frozen=True)
class Verification:
    problems: list[str]
    seals: int
    entries: int
    unsealed: int


# A day's transfers beside the hashes sealed for it; a hash whose transfer is
# gone belongs to the seal whose id range holds it.
_VERIFY_DAY = f"""
WITH t AS (SELECT t.id AS transfer_id, {COLUMNS} FROM ledger_transfers t WHERE {DAY_FILTER}),
h AS (
    SELECT h.transfer_id, h.hash FROM ledger_entry_hashes h
    LEFT JOIN ledger_transfers x ON x.id = h.transfer_id
    WHERE h.transfer_id BETWEEN :first AND :last
      AND (x.id IS NULL OR (x.created_at >= :start AND x.created_at < :end))
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


def _verify_day(uow: UnitOfWork, seal, problems: list[str]) -> tuple[int, str]:
    start, end = day_bounds(seal.day)
    params = {
        "start": start,
        "end": end,
        "first": seal.first_transfer_id or 0,
        "last": seal.last_transfer_id or -1,
    }
    h, count = seal.prev_hash, 0
    rows = uow.conn.execute(text(_VERIFY_DAY).execution_options(yield_per=20_000), params)
    for row in rows:
        tid, present, stored = row.tid, row.present, row.hash
        if stored is None:
            problems.append(f"transfer {tid} extra: dated {seal.day} but not in its seal")
            continue
        count += 1
        if not present:
            problems.append(f"transfer {tid} missing: sealed on {seal.day}, gone from the ledger")
        elif hc.link(h, hc.text_bytes(row[1 : 1 + len(hc.FIELDS)])) != stored:
            problems.append(f"transfer {tid} altered: hash mismatch")
        # Go on from the recorded hash, so one changed entry is named once.
        h = stored
    return count, h
