"""Fraud scoring: every rule, the clamp and the block threshold."""

import dataclasses

import pytest

from shared.domain import fraud
from shared.domain.fraud import FraudSignals, Reason, RiskAssessment, assess, decide

CLEAN = FraudSignals(
    amount=5_000,
    currency="USD",
    is_fraud_test_card=False,
    card_velocity=0,
    ip_velocity=0,
    payer_history_count=10,
    payer_history_avg=4_000,
    merchant_history_avg=6_000,
    blocklisted=(),
    recent_declines=0,
)


def signals(**changes) -> FraudSignals:
    return dataclasses.replace(CLEAN, **changes)


def codes(a: RiskAssessment) -> dict[str, int]:
    return {r.code: r.points for r in a.reasons}


def test_clean_payment_scores_zero():
    a = assess(CLEAN)
    assert a.score == 0
    assert a.reasons == ()
    assert a.to_json() == []


def test_fraud_test_card():
    a = assess(signals(is_fraud_test_card=True))
    assert a.score == 100
    assert codes(a) == {"fraud_test_card": 100}


@pytest.mark.parametrize("kind", fraud.BLOCKLIST_KINDS)
def test_blocklisted(kind):
    a = assess(signals(blocklisted=(kind,)))
    assert a.score == 100
    assert codes(a) == {"blocklisted": 100}
    assert kind in a.reasons[0].detail


@pytest.mark.parametrize(
    ("velocity", "points"), [(0, None), (5, None), (6, 30), (10, 30), (11, 50), (50, 50)]
)
def test_card_velocity_tiers(velocity, points):
    assert codes(assess(signals(card_velocity=velocity))).get("card_velocity") == points


@pytest.mark.parametrize(("velocity", "points"), [(20, None), (21, 25)])
def test_ip_velocity(velocity, points):
    assert codes(assess(signals(ip_velocity=velocity))).get("ip_velocity") == points


@pytest.mark.parametrize(
    ("amount", "points"),
    [(20_000, None), (20_001, 30), (40_000, 30), (40_001, 45)],
)
def test_amount_unusual_for_payer(amount, points):
    s = signals(amount=amount, payer_history_avg=4_000, merchant_history_avg=None)
    assert codes(assess(s)).get("amount_unusual_for_payer") == points


@pytest.mark.parametrize(("count", "avg"), [(2, 100), (3, None), (3, 0)])
def test_payer_rule_needs_enough_history(count, avg):
    s = signals(amount=10**6, payer_history_count=count, payer_history_avg=avg)
    assert "amount_unusual_for_payer" not in codes(assess(s))


@pytest.mark.parametrize(
    ("amount", "avg", "points"), [(20_000, 1_000, None), (20_001, 1_000, 20), (10**9, None, None)]
)
def test_amount_unusual_for_merchant(amount, avg, points):
    s = signals(amount=amount, payer_history_avg=amount, merchant_history_avg=avg)
    assert codes(assess(s)).get("amount_unusual_for_merchant") == points


@pytest.mark.parametrize(("declines", "points"), [(2, None), (3, 40), (9, 40)])
def test_card_testing(declines, points):
    assert codes(assess(signals(recent_declines=declines))).get("card_testing") == points


@pytest.mark.parametrize(
    ("currency", "amount", "count", "points"),
    [
        ("USD", 100_000, 0, 15),  # 1000.00 USD
        ("USD", 99_999, 0, None),
        ("USD", 100_000, 1, None),  # not a first-time payer
        ("JPY", 1_000, 0, 15),  # JPY has no minor unit
        ("ETH", 999 * 10**18, 0, None),
        ("ETH", 1000 * 10**18, 0, 15),
    ],
)
def test_first_time_large_amount(currency, amount, count, points):
    s = signals(
        currency=currency,
        amount=amount,
        payer_history_count=count,
        payer_history_avg=None,
        merchant_history_avg=None,
    )
    assert codes(assess(s)).get("first_time_large_amount") == points


def test_points_add_up():
    a = assess(signals(card_velocity=6, ip_velocity=21))
    assert a.score == 30 + 25
    assert codes(a) == {"card_velocity": 30, "ip_velocity": 25}


def test_score_is_clamped():
    a = assess(
        signals(is_fraud_test_card=True, blocklisted=("ip",), card_velocity=20, recent_declines=5)
    )
    assert a.score == 100
    assert sum(r.points for r in a.reasons) > 100
    assert len(a.reasons) == 4


def test_to_json():
    a = assess(signals(recent_declines=3))
    assert a.to_json() == [{"code": "card_testing", "points": 40, "detail": a.reasons[0].detail}]


def test_threshold_boundary():
    assert decide(RiskAssessment(74, ()), 75) is False
    assert decide(RiskAssessment(75, ()), 75) is True
    assert decide(RiskAssessment(100, (Reason("fraud_test_card", 100, "x"),)), 75) is True


def test_hard_signals_block_at_default_threshold():
    assert decide(assess(signals(is_fraud_test_card=True)), 75)
    assert decide(assess(signals(blocklisted=("wallet",))), 75)
    assert not decide(assess(CLEAN), 75)
