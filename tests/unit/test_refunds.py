"""Refund fee policy and request validation (pure)."""

from __future__ import annotations

import random

import pytest

from shared.domain.refunds import fee_refund, fee_returned, unsettled_net, validate_create
from shared.domain.validation import ValidationError


def test_full_refund_returns_the_whole_fee_and_leaves_nothing_to_settle():
    assert fee_refund(fee=56, received=1020, refunded_before=0, amount=1020) == 56
    assert unsettled_net(received=1020, fee=56, refunded=1020) == 0


def test_partial_refund_returns_its_share_rounded_half_up():
    # 56 × 510 / 1020 = 28 exactly; 56 × 100 / 1020 = 5.49 → 5; 56 × 9 / 1020 = 0.49 → 0
    assert fee_refund(56, 1020, 0, 510) == 28
    assert fee_refund(56, 1020, 0, 100) == 5
    assert fee_refund(56, 1020, 0, 9) == 0
    # 30 × 1 / 2 = 15; 31 × 1 / 2 = 15.5 → 16 (half up)
    assert fee_refund(31, 2, 0, 1) == 16


def test_partial_refunds_add_up_to_the_fee_exactly():
    rng = random.Random(7)
    for _ in range(500):
        received = rng.randrange(1, 10**7)
        fee = rng.randrange(0, received + 1)
        refunded, returned = 0, 0
        while refunded < received:
            amount = rng.randrange(1, received - refunded + 1)
            returned += fee_refund(fee, received, refunded, amount)
            refunded += amount
            left = unsettled_net(received, fee, refunded)
            # What an unsettled intent leaves in pending never goes negative.
            assert 0 <= left <= received - fee
        assert returned == fee
        assert unsettled_net(received, fee, refunded) == 0


def test_nothing_refunded_settles_the_net():
    assert unsettled_net(1020, 56, 0) == 964


def test_fee_returned_refuses_more_than_received():
    with pytest.raises(ValueError):
        fee_returned(10, 100, 101)


def test_validate_create_defaults_and_fields():
    req = validate_create({"payment_intent": "pi_1"})
    assert (req.payment_intent, req.amount, req.reason, req.metadata) == ("pi_1", None, None, {})
    req = validate_create(
        {"payment_intent": "pi_1", "amount": 5, "reason": "duplicate", "metadata": {"a": "b"}}
    )
    assert (req.amount, req.reason, req.metadata) == (5, "duplicate", {"a": "b"})


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "payment_intent", "parameter_missing"),
        ({"payment_intent": 5}, "payment_intent", "parameter_invalid"),
        ({"payment_intent": "pi_1", "amount": 1.5}, "amount", "parameter_invalid_integer"),
        ({"payment_intent": "pi_1", "amount": "5"}, "amount", "parameter_invalid_integer"),
        ({"payment_intent": "pi_1", "amount": True}, "amount", "parameter_invalid_integer"),
        ({"payment_intent": "pi_1", "amount": 0}, "amount", "amount_too_small"),
        ({"payment_intent": "pi_1", "reason": "bored"}, "reason", "parameter_invalid"),
        ({"payment_intent": "pi_1", "metadata": []}, "metadata", "parameter_invalid"),
        ({"payment_intent": "pi_1", "charge": "ch_1"}, "charge", "parameter_unknown"),
    ],
)
def test_validate_create_rejects(body, param, code):
    with pytest.raises(ValidationError) as info:
        validate_create(body)
    assert (info.value.param, info.value.code) == (param, code)
