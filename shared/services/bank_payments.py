"""The two-phase-commit coordinator of bank payments (refunds reuse it: bank_refunds.py).

One transaction per payment (or refund), in ``bank_transactions``:

1. ``begin``: the row and its participants, committed before any bank is asked,
   so that a coordinator dying from here on leaves something the resolver finds;
2. prepare at every participant, outside any database transaction, concurrently;
3. the decision (commit only if every bank voted ready), written by compare-and-set
   in its own committed transaction: the commit point. If the resolver presumed an
   abort first, its decision stands and the coordinator follows it;
4. the decision sent to every bank; each acknowledgement recorded.

The resolver (bank_resolver.py, beat every ``BANK_RESOLVE_INTERVAL_S``) presumes an
abort for rows without a decision past ``BANK_DECISION_TIMEOUT_S`` and re-sends the
decision of every row some bank has not acknowledged. The pure rules are shared.domain.twophase.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from shared.connectors.bank import BankUnavailable
from shared.connectors.base import APPROVED, DECLINED, AuthResult
from shared.db.tables import bank_transactions as btx
from shared.db.tables import merchants
from shared.db.uow import UnitOfWork, transact
from shared.domain import twophase as tp
from shared.services.batches import NewUnit

log = logging.getLogger(__name__)
NO_SETTLEMENT_ACCOUNT = "The merchant has no settlement bank account."
# Calls to banks; transactions run on their own pool, as each waits on the first.
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="bank")
_txs = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bank-tx")


def participants_json(legs) -> list[dict]:
    return [
        {
            "role": p.role,
            "bank": p.bank,
            "account": p.account,
            "amount": str(p.amount),
            "is_credit": p.is_credit,
        }
        for p in legs
    ]


def legs_of(row) -> list[tp.Participant]:
    return [
        tp.Participant(p["role"], p["bank"], p["account"], int(p["amount"]), p["is_credit"])
        for p in row.participants
    ]


def begin(
    uow: UnitOfWork, tx_id: str, intent_id: str, kind: str, currency: str, legs, refund_id=None
):
    """(the transaction's row, True if this call made it; False: a redelivery's)."""
    made = uow.conn.execute(
        insert(btx)
        .values(
            id=tx_id,
            intent_id=intent_id,
            kind=kind,
            refund_id=refund_id,
            currency=currency,
            participants=participants_json(legs),
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(btx.c.id)
    ).first()
    return uow.conn.execute(select(btx).where(btx.c.id == tx_id)).one(), made is not None


def run(new_uow: NewUnit, banks, row) -> tuple[str, str | None]:
    """Drive ``row`` (begun and committed) to a decision and send it; (decision, reason)."""
    if row.decision is None:
        votes = _prepare_all(banks, row)
        row = transact(new_uow, _decide, row.id, votes)
    send(new_uow, banks, row)
    return row.decision, row.reason


def _prepare_all(banks, row) -> dict[str, tuple[tp.Vote, str]]:
    """Each role's vote and when it came (this host's UTC clock)."""

    def one(p: tp.Participant) -> tuple[tp.Vote, str]:
        vote = _vote(banks, row, p)
        return vote, datetime.now(UTC).isoformat()

    legs = legs_of(row)
    return {p.role: v for p, v in zip(legs, _pool.map(one, legs), strict=True)}


def _vote(banks, row, p: tp.Participant) -> tp.Vote:
    try:
        r = banks.prepare(p.bank, row.id, p.account, p.amount, row.currency, p.is_credit)
    except (BankUnavailable, LookupError) as exc:
        log.warning("2pc %s: %s unavailable at prepare: %s", row.id, p.bank, exc)
        return tp.Vote(tp.UNAVAILABLE, str(exc)[:200])
    log.info("2pc %s: %s %s prepare: %s %s", row.id, p.role, p.bank, r.ok, r.reason)
    return tp.Vote(tp.READY, "") if r.ok else tp.Vote(tp.REFUSED, r.reason)


def _decide(uow: UnitOfWork, tx_id: str, votes: dict[str, tuple[tp.Vote, str]]):
    """The commit point: the decision, unless one is there already (then that one)."""
    row = uow.conn.execute(select(btx).where(btx.c.id == tx_id).with_for_update()).one()
    if row.decision is not None:
        return row
    roles = [p.role for p in legs_of(row)]
    decision, reason = tp.decide(roles, {r: v for r, (v, _) in votes.items()})
    recorded = {r: {"vote": v.vote, "reason": v.reason, "at": at} for r, (v, at) in votes.items()}
    log.info("2pc %s: decision %s (%s)", tx_id, decision, reason or "all ready")
    return uow.conn.execute(
        btx.update()
        .where(btx.c.id == tx_id)
        .values(votes=recorded, decision=decision, reason=reason, decided_at=func.clock_timestamp())
        .returning(btx)
    ).one()


def send(new_uow: NewUnit, banks, row) -> None:
    """Tell every bank that has not acknowledged the decision; record who did."""
    legs = {p.role: p for p in legs_of(row)}
    acks = {role: a["state"] for role, a in row.acks.items()}
    step = tp.next_step(list(legs), row.decision, acks, 0, float("inf"))
    if step.step != tp.Step.SEND:
        return

    def one(role: str) -> str | None:
        bank = legs[role].bank
        try:
            call = banks.commit if row.decision == tp.COMMIT else banks.abort
            r = call(bank, row.id)
        except BankUnavailable as exc:
            log.warning("2pc %s: %s unavailable at %s: %s", row.id, bank, row.decision, exc)
            return None
        got = tp.ack(row.decision, r.ok, r.state)
        log.info("2pc %s: %s %s %s: %s %s", row.id, role, bank, row.decision, got, r.reason)
        return got

    answers = dict(zip(step.to, _pool.map(one, step.to), strict=True))
    acks = {r: s for r, s in answers.items() if s is not None}
    transact(new_uow, _record_acks, row.id, acks, datetime.now(UTC).isoformat())


def _record_acks(uow: UnitOfWork, tx_id: str, acks: dict[str, str], at: str) -> None:
    row = uow.conn.execute(select(btx).where(btx.c.id == tx_id).with_for_update()).one()
    merged = {**row.acks, **{r: {"state": s, "at": at} for r, s in acks.items()}}
    roles = [p.role for p in legs_of(row)]
    step = tp.next_step(roles, row.decision, {r: a["state"] for r, a in merged.items()}, 0, 1)
    if step.step == tp.Step.HEURISTIC:
        log.error(
            "2pc %s: a bank did the opposite of the decision %s: %s (an operator's case)",
            tx_id,
            row.decision,
            merged,
        )
    done = step.step in (tp.Step.DONE, tp.Step.HEURISTIC)
    uow.conn.execute(
        btx.update()
        .where(btx.c.id == tx_id)
        .values(
            acks=merged,
            attempts=btx.c.attempts + 1,
            completed_at=func.now() if done else None,
        )
    )


def ask_banks(new_uow: NewUnit, banks, rows) -> dict[str, AuthResult]:
    """Run each bank_account intent's payment transaction; the acquirer's kind of answer."""
    out: dict[str, AuthResult] = {}

    def begin_all(uow: UnitOfWork) -> list:
        ids = sorted({r.merchant_id for r in rows})
        found = uow.conn.execute(select(merchants).where(merchants.c.id.in_(ids)))
        settle_to = {m.id: (m.settlement_bank, m.settlement_bank_account) for m in found}
        begun = []
        for r in rows:
            to = settle_to.get(r.merchant_id, (None, None))
            if None in to:
                out[r.id] = AuthResult(DECLINED, tp.BANK_UNAVAILABLE, NO_SETTLEMENT_ACCOUNT)
                continue
            net = r.amount - (r.fee_amount or 0)
            legs = tp.legs((r.bank, r.bank_account), to, r.amount, net)
            begun.append(begin(uow, f"btx_{r.id}", r.id, "payment", r.currency, legs))
        return begun

    begun = transact(new_uow, begin_all)
    # Found begun and undecided: its coordinator died (or is a duplicate still voting).
    # Presumed abort, whoever comes next: never a second round of votes.
    begun = [
        row if made or row.decision else transact(new_uow, presume_abort, row.id)
        for row, made in begun
    ]

    def one(row) -> AuthResult:
        decision, reason = run(new_uow, banks, row)
        if decision == tp.COMMIT:
            return AuthResult(APPROVED, reference=row.id)
        return AuthResult(
            DECLINED,
            tp.INSUFFICIENT_FUNDS if reason == tp.INSUFFICIENT_FUNDS else tp.BANK_UNAVAILABLE,
            None,
        )

    for row, result in zip(begun, _txs.map(one, begun), strict=True):
        out[row.intent_id] = result
    return out


def presume_abort(uow: UnitOfWork, tx_id: str):
    """Abort an undecided transaction (compare-and-set: a decision already there stands)."""
    uow.conn.execute(
        btx.update()
        .where(btx.c.id == tx_id, btx.c.decision.is_(None))
        .values(decision=tp.ABORT, reason=tp.PRESUMED_ABORT, decided_at=func.clock_timestamp())
    )
    row = uow.conn.execute(select(btx).where(btx.c.id == tx_id)).one()
    log.info("2pc %s: no decision in time: presumed abort (now %s)", tx_id, row.decision)
    return row


def timeline(row) -> list[tuple[datetime | str, str]]:
    """The transaction's events in time order: begun, votes, decision, acknowledgements."""
    events = [(row.created_at.isoformat(), "begun")]
    events += [
        (v["at"], f"{r} voted {v['vote']} {v['reason']}".strip()) for r, v in row.votes.items()
    ]
    if row.decided_at is not None:
        events.append(
            (row.decided_at.isoformat(), f"decision {row.decision} ({row.reason or 'all ready'})")
        )
    events += [(a["at"], f"{r} acknowledged {a['state']}") for r, a in row.acks.items()]
    return sorted(events)
