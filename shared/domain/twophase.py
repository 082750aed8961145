"""The two-phase-commit coordinator's state machine, as pure functions.

A transaction has participants (the payer's bank and the merchant's, each with an
account, an amount and a side). Phase one collects a vote from each: ``ready``,
``refused`` (with the bank's reason) or ``unavailable`` (no answer in time). The
decision is ``commit`` only when every participant is ready; anything else aborts.
Phase two sends the decision to every participant until each acknowledged it.

Presumed abort: a transaction with no decision recorded is aborted once it is older
than the decision timeout (its coordinator died before deciding). A decision, once
recorded, never changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

READY, REFUSED, UNAVAILABLE = "ready", "refused", "unavailable"
COMMIT, ABORT = "commit", "abort"
COMMITTED, ABORTED = "committed", "aborted"
# Why a transaction aborted; insufficient_funds and bank_unavailable are the
# intent's failure codes, presumed_abort is the resolver's.
INSUFFICIENT_FUNDS = "insufficient_funds"
BANK_UNAVAILABLE = "bank_unavailable"
PRESUMED_ABORT = "presumed_abort"


class Step(StrEnum):
    WAIT = "wait"  # no decision yet, its coordinator may still be voting
    DECIDE_ABORT = "decide_abort"  # presumed abort: record it, then tell every bank
    SEND = "send"  # tell the banks that have not acknowledged the decision
    DONE = "done"  # every bank acknowledged the decision
    HEURISTIC = "heuristic"  # a bank did the opposite of the decision: an operator's case


@dataclass(frozen=True)
class Participant:
    role: str  # payer | merchant
    bank: str
    account: str
    amount: int
    is_credit: bool


@dataclass(frozen=True)
class Vote:
    vote: str  # READY | REFUSED | UNAVAILABLE
    reason: str = ""


@dataclass(frozen=True)
class Next:
    step: Step
    to: tuple[str, ...] = ()  # roles to send the decision to


def legs(
    payer: tuple[str, str], merchant: tuple[str, str], debit: int, credit: int, *, refund=False
):
    """The participants of a payment (payer debited, merchant credited) or a refund (reversed).

    A leg of zero is left out (a fee equal to the amount leaves the merchant nothing).
    """
    payer_leg = Participant("payer", *payer, debit if not refund else credit, is_credit=refund)
    merchant_leg = Participant("merchant", *merchant, credit if not refund else debit, not refund)
    return tuple(p for p in (payer_leg, merchant_leg) if p.amount > 0)


def decide(roles, votes: dict[str, Vote]) -> tuple[str, str | None]:
    """(decision, abort reason): commit only when every role voted ready."""
    missing = [r for r in roles if r not in votes]
    if not missing and all(votes[r].vote == READY for r in roles):
        return COMMIT, None
    if any(v.vote == REFUSED and v.reason == INSUFFICIENT_FUNDS for v in votes.values()):
        return ABORT, INSUFFICIENT_FUNDS
    return ABORT, BANK_UNAVAILABLE


def next_step(
    roles, decision: str | None, acks: dict[str, str], age_s: float, timeout_s: float
) -> Next:
    """What the resolver does with a transaction: wait, presume abort, send, or nothing."""
    if decision is None:
        return Next(Step.DECIDE_ABORT, tuple(roles)) if age_s >= timeout_s else Next(Step.WAIT)
    want = COMMITTED if decision == COMMIT else ABORTED
    if any(acks.get(r) not in (None, want) for r in roles):
        return Next(Step.HEURISTIC)
    pending = tuple(r for r in roles if acks.get(r) != want)
    return Next(Step.SEND, pending) if pending else Next(Step.DONE)


def ack(decision: str, ok: bool, state: str | None) -> str | None:
    """What a bank's reply to the decision acknowledges: its final state, or None (ask again).

    An abort of a transaction the bank never saw counts (it leaves a tombstone, so a
    late Prepare is refused); a refused commit of an aborted transaction is the
    bank's heuristic abort (its prepare TTL ran out first) and is recorded as such.
    """
    if state in (COMMITTED, ABORTED):
        return state
    if decision == ABORT and ok:
        return ABORTED
    return None
