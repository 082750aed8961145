"""The sandbox bank as a process: its protocol's promises, over gRPC.

Every call is idempotent per tx_id, a Commit after an Abort (and an Abort after a
Commit) is refused, a prepared debit reserves its funds, the cleanup loop aborts
what was prepared longer than BANK_PREPARE_TTL_S ago, and only the gateway's token
gets in.
"""

from __future__ import annotations

import secrets

import pytest

from shared.connectors.bank import Banks, BankUnavailable
from tests.support.banks import BankPair
from tests.support.waiting import until

pytestmark = pytest.mark.integration


@pytest.fixture
def bank(tmp_path):
    pair = BankPair(tmp_path)
    pair.start("bank_a", BANK_PREPARE_TTL_S="1", BANK_CLEANUP_INTERVAL_S="0.2")
    yield pair
    pair.stop_all()


def _tx() -> str:
    return "btx_test_" + secrets.token_hex(6)


def test_every_call_is_idempotent_and_a_decision_cannot_be_reversed(bank):
    c = bank.client
    payer = bank.open_account("bank_a", "payer", 1_000)
    debit, credit = _tx(), _tx()
    first = c.prepare("bank_a", debit, payer, 600, "USD", is_credit=False)
    assert (first.ok, first.state) == (True, "prepared")
    assert c.prepare("bank_a", debit, payer, 600, "USD", is_credit=False) == first
    assert c.account("bank_a", payer) | {"owner": None} == {
        "account": payer,
        "owner": None,
        "currency": "USD",
        "balance": 1_000,
        "reserved": 600,
    }
    # The same tx_id asking for something else is refused, not re-prepared.
    assert c.prepare("bank_a", debit, payer, 700, "USD", is_credit=False).reason == (
        "conflicting_request"
    )
    # What is reserved cannot be spent twice.
    broke = c.prepare("bank_a", _tx(), payer, 600, "USD", is_credit=False)
    assert (broke.ok, broke.reason) == (False, "insufficient_funds")
    assert c.commit("bank_a", debit).state == "committed"
    assert c.commit("bank_a", debit).ok  # again: the same outcome
    refused = c.abort("bank_a", debit)
    assert (refused.ok, refused.state, refused.reason) == (False, "committed", "already_committed")
    assert (c.account("bank_a", payer)["balance"], c.account("bank_a", payer)["reserved"]) == (
        400,
        0,
    )
    # A credit: nothing reserved; aborted, it moves nothing and cannot be committed.
    merchant = bank.open_account("bank_a", "merchant")
    assert c.prepare("bank_a", credit, merchant, 250, "USD", is_credit=True).ok
    assert c.abort("bank_a", credit).state == "aborted"
    assert c.abort("bank_a", credit).ok
    late = c.commit("bank_a", credit)
    assert (late.ok, late.state, late.reason) == (False, "aborted", "already_aborted")
    assert c.account("bank_a", merchant)["balance"] == 0
    # An Abort before its Prepare leaves a tombstone: the late Prepare is refused.
    early = _tx()
    assert c.abort("bank_a", early).ok
    assert not c.prepare("bank_a", early, payer, 1, "USD", is_credit=False).ok
    assert not c.commit("bank_a", _tx()).ok  # never prepared: nothing to commit
    assert c.status("bank_a", _tx()).state is None
    assert bank.total() == 400


def test_a_prepared_transaction_past_its_ttl_is_aborted_by_the_bank(bank):
    c = bank.client
    payer = bank.open_account("bank_a", "payer", 1_000)
    tx = _tx()
    assert c.prepare("bank_a", tx, payer, 900, "USD", is_credit=False).ok
    until(lambda: c.status("bank_a", tx).state == "aborted", timeout=15, what="the TTL abort")
    assert c.status("bank_a", tx).reason == "expired"
    assert c.account("bank_a", payer)["reserved"] == 0
    assert not c.commit("bank_a", tx).ok  # a coordinator's late commit is refused
    bank.procs["bank_a"].wait_for(f"bank bank_a: expired {tx}")
    assert c.account("bank_a", payer)["balance"] == 1_000


def test_only_the_gateways_token_gets_in(bank):
    assert bank.client.ping("bank_a") == "bank_a"
    stranger = Banks(bank.addresses, "not-the-token", timeout_s=5)
    with pytest.raises(BankUnavailable, match="UNAUTHENTICATED"):
        stranger.ping("bank_a")
    with pytest.raises(BankUnavailable, match="UNAUTHENTICATED"):
        stranger.create_account("bank_a", "intruder", "USD")
    anonymous = Banks(bank.addresses, "", timeout_s=5)
    with pytest.raises(BankUnavailable, match="UNAUTHENTICATED"):
        anonymous.prepare("bank_a", _tx(), "acc_00", 1, "USD", is_credit=True)
