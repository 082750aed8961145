"""The coordinator's state machine (shared/domain/twophase.py): what to do next."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.domain import twophase as tp

ROLES = ("payer", "merchant")
READY = tp.Vote(tp.READY)


def test_commit_only_when_every_participant_is_ready():
    assert tp.decide(ROLES, {"payer": READY, "merchant": READY}) == (tp.COMMIT, None)
    assert tp.decide(ROLES, {"payer": READY}) == (tp.ABORT, tp.BANK_UNAVAILABLE)
    assert tp.decide(ROLES, {}) == (tp.ABORT, tp.BANK_UNAVAILABLE)


def test_a_refusal_for_funds_is_insufficient_funds_and_anything_else_bank_unavailable():
    broke = tp.Vote(tp.REFUSED, tp.INSUFFICIENT_FUNDS)
    down = tp.Vote(tp.UNAVAILABLE, "deadline")
    odd = tp.Vote(tp.REFUSED, "no_such_account")
    assert tp.decide(ROLES, {"payer": broke, "merchant": READY}) == (
        tp.ABORT,
        tp.INSUFFICIENT_FUNDS,
    )
    assert tp.decide(ROLES, {"payer": broke, "merchant": down}) == (
        tp.ABORT,
        tp.INSUFFICIENT_FUNDS,
    )
    assert tp.decide(ROLES, {"payer": READY, "merchant": down}) == (tp.ABORT, tp.BANK_UNAVAILABLE)
    assert tp.decide(ROLES, {"payer": odd, "merchant": READY}) == (tp.ABORT, tp.BANK_UNAVAILABLE)


votes = st.sampled_from([READY, tp.Vote(tp.REFUSED, "insufficient_funds"), tp.Vote(tp.UNAVAILABLE)])


@given(st.dictionaries(st.sampled_from(ROLES), votes))
def test_any_vote_short_of_all_ready_aborts(given_votes):
    decision, reason = tp.decide(ROLES, given_votes)
    all_ready = len(given_votes) == 2 and all(v == READY for v in given_votes.values())
    assert (decision == tp.COMMIT) == all_ready
    assert (reason is None) == all_ready


def test_no_decision_waits_until_the_timeout_then_presumes_abort():
    assert tp.next_step(ROLES, None, {}, 2.9, 3).step == tp.Step.WAIT
    assert tp.next_step(ROLES, None, {}, 3, 3) == tp.Next(tp.Step.DECIDE_ABORT, ROLES)


def test_a_decision_is_sent_to_every_bank_that_has_not_acknowledged_it():
    assert tp.next_step(ROLES, tp.COMMIT, {}, 0, 3) == tp.Next(tp.Step.SEND, ROLES)
    assert tp.next_step(ROLES, tp.COMMIT, {"payer": tp.COMMITTED}, 99, 3) == tp.Next(
        tp.Step.SEND, ("merchant",)
    )
    done = {"payer": tp.ABORTED, "merchant": tp.ABORTED}
    assert tp.next_step(ROLES, tp.ABORT, done, 0, 3).step == tp.Step.DONE


def test_a_bank_that_did_the_opposite_is_a_heuristic_outcome():
    acks = {"payer": tp.COMMITTED, "merchant": tp.ABORTED}
    assert tp.next_step(ROLES, tp.COMMIT, acks, 0, 3).step == tp.Step.HEURISTIC
    assert tp.next_step(ROLES, tp.ABORT, {"payer": tp.COMMITTED}, 0, 3).step == tp.Step.HEURISTIC


def test_what_a_reply_acknowledges():
    assert tp.ack(tp.COMMIT, True, tp.COMMITTED) == tp.COMMITTED
    assert tp.ack(tp.COMMIT, False, tp.ABORTED) == tp.ABORTED  # the bank's TTL came first
    assert tp.ack(tp.COMMIT, False, None) is None  # never prepared there: ask again
    assert tp.ack(tp.ABORT, True, tp.ABORTED) == tp.ABORTED
    assert tp.ack(tp.ABORT, True, None) == tp.ABORTED
    assert tp.ack(tp.ABORT, False, tp.COMMITTED) == tp.COMMITTED


def test_a_payment_debits_the_payer_and_credits_the_merchant_and_a_refund_reverses_them():
    pay = tp.legs(("bank_a", "acc_1"), ("bank_b", "acc_2"), 1000, 945)
    assert pay == (
        tp.Participant("payer", "bank_a", "acc_1", 1000, is_credit=False),
        tp.Participant("merchant", "bank_b", "acc_2", 945, is_credit=True),
    )
    back = tp.legs(("bank_a", "acc_1"), ("bank_b", "acc_2"), 500, 470, refund=True)
    assert back == (
        tp.Participant("payer", "bank_a", "acc_1", 470, is_credit=True),
        tp.Participant("merchant", "bank_b", "acc_2", 500, is_credit=False),
    )
    # A fee equal to the amount leaves the merchant's leg out.
    assert [p.role for p in tp.legs(("a", "1"), ("b", "2"), 30, 0)] == ["payer"]
