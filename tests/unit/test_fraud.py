"""Fraud scoring: every rule, the clamp, the risk levels and the sandbox's test cards."""

import dataclasses

import pytest

from shared.domain import fraud
from shared.domain.fraud import (
    FraudSignals,
    RiskAssessment,
    RiskLevel,
    SandboxCard,
    Thresholds,
)

CLEAN = FraudSignals(
    amount=5_000,
    currency="USD",
    test_card=None,
    card_velocity=0,
    ip_velocity=0,
    payer_history_count=10,
    payer_history_avg=4_000,
    merchant_history_avg=6_000,
    blocklisted=(),
    recent_declines=0,
)


# Every rule that looks at velocity or behaviour fires on these signals.
SUSPICIOUS = dict(
    amount=10**7,
    card_velocity=50,
    ip_velocity=50,
    payer_history_count=0,
    payer_history_avg=None,
    merchant_history_avg=100,
    recent_declines=9,
)
DEFAULT = Thresholds.below(75)


def signals(**changes) -> FraudSignals:
    return dataclasses.replace(CLEAN, **changes)


def assess(s: FraudSignals, t: Thresholds = DEFAULT) -> RiskAssessment:
    return fraud.assess(s, t)


def codes(a: RiskAssessment) -> dict[str, int]:
    return {r.code: r.points for r in a.reasons}


def test_clean_payment_scores_zero():
    a = assess(CLEAN)
    assert a.score == 0
    assert a.reasons == ()
    assert a.to_json() == []


def test_fraud_test_card():
    a = assess(signals(test_card=SandboxCard.FRAUD))
    assert (a.score, a.level, a.blocked) == (100, RiskLevel.HIGHEST, True)
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
    a = assess(signals(blocklisted=("ip",), card_velocity=20, recent_declines=5, ip_velocity=21))
    assert a.score == 100
    assert sum(r.points for r in a.reasons) > 100
    assert len(a.reasons) == 4


def test_to_json():
    a = assess(signals(recent_declines=3))
    assert a.to_json() == [{"code": "card_testing", "points": 40, "detail": a.reasons[0].detail}]


def test_threshold_boundary():
    t = Thresholds.below(75)
    assert (t.block, t.review) == (75, 65)
    assert [t.level(score) for score in (0, 64, 65, 74, 75, 100)] == [
        RiskLevel.NORMAL,
        RiskLevel.NORMAL,
        RiskLevel.ELEVATED,
        RiskLevel.ELEVATED,
        RiskLevel.HIGHEST,
        RiskLevel.HIGHEST,
    ]


@pytest.mark.parametrize(
    ("block", "band", "review"),
    [(75, 10, 65), (75, 1, 74), (75, 0, 74), (16, 10, 6), (10, 10, 1), (5, 10, 1), (1, 10, 1)],
)
def test_the_review_band_sits_under_the_block_threshold_and_never_reaches_zero(block, band, review):
    t = Thresholds.below(block, band)
    assert (t.block, t.review) == (block, review)
    assert t.level(0) in (RiskLevel.NORMAL, RiskLevel.HIGHEST)  # a zero score is never reviewed


def test_a_score_in_the_band_opens_a_review_and_is_not_blocked():
    a = assess(signals(card_velocity=11, payer_history_count=0, amount=100_000))  # 50 + 15
    assert (a.score, a.level, a.review, a.blocked) == (65, RiskLevel.ELEVATED, True, False)
    below = assess(signals(card_velocity=11))
    assert (below.score, below.level, below.review) == (50, RiskLevel.NORMAL, False)
    at = assess(signals(card_velocity=11, ip_velocity=21))
    assert (at.score, at.level, at.review, at.blocked) == (75, RiskLevel.HIGHEST, False, True)


def test_the_merchants_threshold_moves_the_band():
    s = signals(card_velocity=6)  # 30
    assert assess(s, Thresholds.below(35)).level is RiskLevel.ELEVATED
    assert assess(s, Thresholds.below(30)).level is RiskLevel.HIGHEST
    assert assess(s, Thresholds.below(41)).level is RiskLevel.NORMAL


def test_hard_signals_block_at_default_threshold():
    assert assess(signals(test_card=SandboxCard.FRAUD)).blocked
    assert assess(signals(blocklisted=("wallet",))).blocked
    assert not assess(CLEAN).blocked


# --- the sandbox's documented test cards ---------------------------------------


def test_ordinary_numbers_get_every_rule():
    a = assess(signals(**SUSPICIOUS))
    assert set(codes(a)) == {
        "card_velocity",
        "ip_velocity",
        "amount_unusual_for_merchant",
        "card_testing",
        "first_time_large_amount",
    }
    assert a.blocked


@pytest.mark.parametrize("block", [2, 50, 75, 100])
def test_a_plain_test_card_is_never_scored_by_velocity_or_behaviour(block):
    a = assess(signals(test_card=SandboxCard.PLAIN, **SUSPICIOUS), Thresholds.below(block))
    assert (a.score, a.reasons, a.level) == (0, (), RiskLevel.NORMAL)
    history = signals(test_card=SandboxCard.PLAIN, amount=10**7, payer_history_avg=100)
    assert assess(history).score == 0


@pytest.mark.parametrize("block", [0, 1, 50, 75, 100])
@pytest.mark.parametrize("card", [SandboxCard.HIGHEST_RISK, SandboxCard.FRAUD])
def test_the_highest_risk_cards_are_blocked_at_any_threshold(card, block):
    for extra in ({}, SUSPICIOUS):
        a = assess(signals(test_card=card, **extra), Thresholds.below(block))
        assert (a.score, a.level, a.blocked) == (100, RiskLevel.HIGHEST, True)
        assert len(a.reasons) == 1
    assert codes(assess(signals(test_card=SandboxCard.HIGHEST_RISK))) == {
        "highest_risk_test_card": 100
    }


@pytest.mark.parametrize("block", [2, 11, 16, 50, 75, 100])
@pytest.mark.parametrize("band", [1, 5, 10, 100])
def test_the_elevated_risk_card_lands_in_the_merchants_review_band(block, band):
    t = Thresholds.below(block, band)
    for extra in ({}, SUSPICIOUS):  # velocity and behaviour add nothing
        a = assess(signals(test_card=SandboxCard.ELEVATED_RISK, **extra), t)
        assert codes(a) == {"elevated_risk_test_card": t.review}
        assert (a.score, a.level, a.review, a.blocked) == (
            t.review,
            RiskLevel.ELEVATED,
            True,
            False,
        )


def test_the_merchants_threshold_still_applies_to_test_cards():
    """0 blocks every intent; 0 or 1 leaves no band, so the elevated card is blocked there."""
    for card in SandboxCard:
        assert assess(signals(test_card=card), Thresholds.below(0)).blocked, card
    elevated = signals(test_card=SandboxCard.ELEVATED_RISK)
    assert assess(elevated, Thresholds.below(1)).blocked
    assert not assess(elevated, Thresholds.below(2)).blocked
    assert not assess(signals(test_card=SandboxCard.PLAIN), Thresholds.below(1)).blocked


def test_a_blocklist_entry_still_applies_to_test_cards():
    for card in SandboxCard:
        a = assess(signals(test_card=card, blocklisted=("card_fingerprint",)))
        assert "blocklisted" in codes(a) and a.blocked, card
