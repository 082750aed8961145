"""Anchor each daily seal on a public chain, and check the seals against it.

Sealing never waits for the chain: a seal commits first (seals.py), and this
job, run by beat apart from it, anchors what is not anchored yet. Each anchor
is signed and recorded before it is sent (the send follows the commit, as an
enqueue does), then sent again, the same bytes, on every run until a block
holds it. A crash after the send therefore never anchors a seal twice, and an
unreachable node only delays anchoring: the next run tries again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select, text

from shared.connectors.chain import AnchorChain, ChainError
from shared.db.tables import ledger_anchors, ledger_seals
from shared.db.uow import UnitOfWork
from shared.domain import anchors
from shared.domain import hashchain as hc
from shared.services import audit
from shared.services.seals import recompute_seal

# pg_try_advisory_xact_lock key: one anchoring run at a time ("clhanch").
ANCHOR_LOCK_KEY = 0x636C_6861_6E63_68


@dataclass
class Step:
    sent: list[date] = field(default_factory=list)
    resent: list[date] = field(default_factory=list)
    mined: list[date] = field(default_factory=list)
    busy: bool = False
    # (nonce, signed transaction) to send once the run commits.
    outbox: list[tuple[int, bytes]] = field(default_factory=list, repr=False)


def anchor_step(uow: UnitOfWork, chain: AnchorChain) -> Step:
    """Record what the chain mined, (re)send what it has not; sends follow the commit."""
    step = Step()
    locked = text("SELECT pg_try_advisory_xact_lock(:k)")
    if not uow.conn.execute(locked, {"k": ANCHOR_LOCK_KEY}).scalar():
        step.busy = True  # another run is at it
        return step
    # Only this account's on this chain: another key's (or chain's) anchor cannot be
    # followed nor signed again from here, and its row may never change sender or chain.
    pending = uow.conn.execute(
        select(ledger_anchors)
        .where(
            ledger_anchors.c.block_number.is_(None),
            ledger_anchors.c.sender == chain.address,
            ledger_anchors.c.chain_id == chain.chain_id,
        )
        .order_by("day")
    ).all()
    uow.on_commit(lambda: _send(chain, step.outbox))
    for row in pending:
        _follow(uow, chain, row, step)
    unanchored = uow.conn.execute(
        select(ledger_seals.c.day, ledger_seals.c.seal_hash)
        .outerjoin(ledger_anchors, ledger_anchors.c.day == ledger_seals.c.day)
        .where(ledger_anchors.c.day.is_(None))
        .order_by(ledger_seals.c.day)
    ).all()
    nonce = _next_nonce(uow, chain) if unanchored else 0
    for day, seal_hash in unanchored:
        tx_hash, raw = chain.sign(anchors.payload(seal_hash), nonce)
        uow.conn.execute(
            ledger_anchors.insert().values(
                day=day,
                seal_hash=seal_hash,
                chain_id=chain.chain_id,
                sender=chain.address,
                nonce=nonce,
                tx_hash=tx_hash,
                raw_tx=raw,
            )
        )
        step.outbox.append((nonce, raw))
        step.sent.append(day)
        nonce += 1
    return step


def anchor_as(uow: UnitOfWork, chain: AnchorChain, actor: audit.Actor) -> Step:
    """``anchor_step`` run by hand (``clearhouse ledger anchor``): audited when it did anything."""
    step = anchor_step(uow, chain)
    done = {k: [d.isoformat() for d in getattr(step, k)] for k in ("sent", "resent", "mined")}
    if any(done.values()):
        audit.record_as(uow, actor, "ledger.anchor", "ledger", after=done)
    return step


def _follow(uow: UnitOfWork, chain: AnchorChain, row, step: Step) -> None:
    # The nonce first: if ours took it, the receipt read after it shows ours.
    taken = chain.mined_nonce() > row.nonce
    block = chain.block_of(row.tx_hash)
    if block is not None:
        # Mined; recorded (and so final) once deep enough, else left for a later run.
        if chain.final(block):
            _update(uow, row.day, block_number=block, mined_at=func.now())
            step.mined.append(row.day)
        return
    if taken:
        # Its nonce went to another transaction (the key is used elsewhere, or a
        # node lost ours and the account moved on): sign it again with a new one.
        nonce = _next_nonce(uow, chain)
        tx_hash, raw = chain.sign(anchors.payload(row.seal_hash), nonce)
        _update(uow, row.day, nonce=nonce, tx_hash=tx_hash, raw_tx=raw, sent_at=func.now())
    else:
        nonce, raw = row.nonce, bytes(row.raw_tx)
    step.outbox.append((nonce, raw))
    step.resent.append(row.day)


def _next_nonce(uow: UnitOfWork, chain: AnchorChain) -> int:
    # Ours not yet at the node (signed, not sent) count too: never two anchors on one nonce.
    ours = uow.conn.execute(
        select(func.max(ledger_anchors.c.nonce)).where(
            ledger_anchors.c.sender == chain.address,
            ledger_anchors.c.chain_id == chain.chain_id,
            ledger_anchors.c.block_number.is_(None),
        )
    ).scalar()
    return max(chain.next_nonce(), -1 if ours is None else ours + 1)


def _update(uow: UnitOfWork, day: date, **values) -> None:
    uow.conn.execute(ledger_anchors.update().where(ledger_anchors.c.day == day).values(**values))


def _send(chain: AnchorChain, outbox: list[tuple[int, bytes]]) -> None:
    # In nonce order: a node may refuse (or hold back) a nonce after a gap.
    for _, raw in sorted(outbox):
        # Recorded already: a failed send is the next run's to repeat (NonceTaken
        # too: the next run signs that seal again with a free nonce).
        with contextlib.suppress(ChainError):
            chain.broadcast(raw)


@dataclass(frozen=True)
class AnchorReport:
    problems: list[str]
    seals: int
    anchored: int
    unanchored: list[date]
    first_difference: date | None


def verify_anchors(uow: UnitOfWork, chain: AnchorChain) -> AnchorReport:
    """Check every seal against its anchor: the chain's data, the stored and recomputed seal.

    The recomputation chains each day from the previous recomputed seal, so
    it is what an honest sealer would write over the ledger as it is now. A
    seal not yet mined is listed as unanchored, which is not a difference,
    unless the account has sent more transactions than anchors are on record.
    """
    rows = uow.conn.execute(
        select(
            ledger_seals.c.day,
            ledger_seals.c.seal_hash,
            ledger_anchors.c.tx_hash,
            ledger_anchors.c.block_number,
        )
        .outerjoin(ledger_anchors, ledger_anchors.c.day == ledger_seals.c.day)
        .order_by(ledger_seals.c.day)
    ).all()
    problems, unanchored, first = [], [], None
    prev = hc.GENESIS
    for row in rows:
        day, stored = row.day, row.seal_hash
        recomputed = recompute_seal(uow, day, prev)
        prev = recomputed
        if row.block_number is None:
            unanchored.append(day)
            continue
        onchain = chain.lookup(row.tx_hash)
        problem = anchors.judge(
            day, stored, recomputed, row.tx_hash, row.block_number, onchain, chain.address
        )
        if problem:
            problems.append(problem)
            first = first or day
    on_record = uow.conn.execute(
        select(func.count()).where(
            ledger_anchors.c.sender == chain.address, ledger_anchors.c.chain_id == chain.chain_id
        )
    ).scalar()
    removed = anchors.missing_anchors(unanchored, chain.mined_nonce(), on_record, chain.address)
    if removed:
        problems.append(removed)
        first = min(first or unanchored[0], unanchored[0])
    anchored = len(rows) - len(unanchored)
    return AnchorReport(problems, len(rows), anchored, unanchored, first)
