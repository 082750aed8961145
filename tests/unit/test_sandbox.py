"""Sandbox acquirer: test numbers, Luhn, references, latency, failure injection, replays."""

import random
import types

import pytest

from shared.config import Settings
from shared.connectors import sandbox
from shared.connectors.base import AuthRequest, AuthResult
from shared.connectors.sandbox import RISK_TEST_CARDS, TEST_CARDS, SandboxAcquirer, fraud_roles
from shared.domain.fraud import SandboxCard


def req(pan: str, intent_id: str = "pi_123") -> AuthRequest:
    return AuthRequest(
        intent_id=intent_id, amount=1000, currency="USD", pan=pan, exp_month=12, exp_year=2034
    )


@pytest.mark.parametrize(("pan", "expected"), sorted(TEST_CARDS.items()))
def test_test_cards(pan, expected):
    result = SandboxAcquirer().authorize(req(pan))
    assert (result.outcome, result.code) == expected
    if result.outcome == "approved":
        assert result.reference == sandbox.auth_reference("pi_123")
        assert result.message is None
    else:
        assert result.reference is None
        assert result.message


def test_stripe_outcomes():
    a = SandboxAcquirer()
    assert a.authorize(req("4242424242424242")).approved
    declined = a.authorize(req("4000000000000002", "pi_d"))
    assert declined == AuthResult("declined", "card_declined", "Your card was declined.")
    assert a.authorize(req("4000000000009995", "pi_i")).code == "insufficient_funds"
    assert a.authorize(req("4000000000000069", "pi_e")).code == "expired_card"
    err = a.authorize(req("4000000000000119", "pi_p"))
    assert err.transient and err.code == "processing_error"


def test_processing_error_is_always_transient():
    a = SandboxAcquirer()
    for _ in range(5):
        assert a.authorize(req("4000000000000119")).outcome == "transient_error"


@pytest.mark.parametrize("pan", sorted(RISK_TEST_CARDS))
def test_risk_cards_approve_at_the_acquirer(pan):
    # The fraud stage decides them; one the acquirer sees is one the stage let through.
    assert SandboxAcquirer().authorize(req(pan)).approved


def test_every_documented_card_has_a_fraud_role():
    """Stripe's Radar test numbers score by fiat; every other documented card is plain."""
    assert fraud_roles() == {
        "4242424242424242": SandboxCard.PLAIN,
        "4000000000000002": SandboxCard.PLAIN,
        "4000000000009995": SandboxCard.PLAIN,
        "4000000000000069": SandboxCard.PLAIN,
        "4000000000000119": SandboxCard.PLAIN,
        "4100000000000019": SandboxCard.FRAUD,
        "4000000000004954": SandboxCard.HIGHEST_RISK,
        "4000000000009235": SandboxCard.ELEVATED_RISK,
    }


@pytest.mark.parametrize("pan", ["4111111111111111", "5555555555554444", "378282246310005"])
def test_other_luhn_valid_numbers_approve(pan):
    assert SandboxAcquirer().authorize(req(pan)).approved


@pytest.mark.parametrize("pan", ["4242424242424241", "1234", "42424242424242a2", ""])
def test_invalid_numbers_decline(pan):
    result = SandboxAcquirer().authorize(req(pan))
    assert (result.outcome, result.code) == ("declined", "card_declined")


def test_reference_is_deterministic():
    ref = sandbox.auth_reference("pi_abc")
    assert ref.startswith("auth_") and len(ref) == 5 + 16
    assert SandboxAcquirer().authorize(req("4242424242424242", "pi_abc")).reference == ref
    assert sandbox.auth_reference("pi_other") != ref


def test_same_request_same_answer_across_instances():
    r = req("4242424242424242", "pi_same")
    assert SandboxAcquirer().authorize(r) == SandboxAcquirer().authorize(r)


def test_pan_not_in_repr():
    assert "4242424242424242" not in repr(req("4242424242424242"))


def test_latency(monkeypatch):
    slept = []
    monkeypatch.setattr(sandbox.time, "sleep", slept.append)
    SandboxAcquirer(latency_ms=250).authorize(req("4242424242424242"))
    SandboxAcquirer().authorize(req("4242424242424242"))
    assert slept == [0.25]


def test_failure_injection_always():
    result = SandboxAcquirer(failure_rate=1.0).authorize(req("4242424242424242"))
    assert result == AuthResult("transient_error", "processing_error", "injected failure")


def test_failure_injection_rate_is_roughly_honoured():
    a = SandboxAcquirer(failure_rate=0.3, rng=random.Random(7))
    results = [a.authorize(req("4242424242424242", f"pi_{i}")) for i in range(2000)]
    injected = sum(r.transient for r in results)
    assert 500 < injected < 700


def test_retry_after_injected_failure_can_succeed_and_is_then_stable():
    a = SandboxAcquirer(failure_rate=0.5, rng=random.Random(1))
    r = req("4242424242424242", "pi_retry")
    results = [a.authorize(r) for _ in range(50)]
    first_ok = next(i for i, x in enumerate(results) if x.approved)
    # Once approved, a replay of the same intent gets the same answer, never an injected failure.
    assert all(x.approved for x in results[first_ok:])


def test_final_answer_replayed():
    a = SandboxAcquirer()
    first = a.authorize(req("4000000000000002", "pi_x"))
    a.failure_rate = 1.0
    assert a.authorize(req("4000000000000002", "pi_x")) == first


@pytest.mark.parametrize(("latency", "rate"), [(-1, 0.0), (0, -0.1), (0, 1.5)])
def test_rejects_bad_config(latency, rate):
    with pytest.raises(ValueError):
        SandboxAcquirer(latency_ms=latency, failure_rate=rate)


def test_from_settings():
    a = SandboxAcquirer.from_settings(
        Settings().replace(acquirer_latency_ms=5, acquirer_failure_rate=0.1)
    )
    assert (a.latency_ms, a.failure_rate) == (5, 0.1)
    b = SandboxAcquirer.from_settings(
        types.SimpleNamespace(acquirer_latency_ms=0, acquirer_failure_rate=0.0)
    )
    assert b.authorize(req("4242424242424242")).approved


def test_luhn():
    assert sandbox.luhn_valid("4242424242424242")
    assert not sandbox.luhn_valid("4242424242424243")
    assert not sandbox.luhn_valid("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢")  # non-ASCII digits
