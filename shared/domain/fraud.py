"""Rule-based fraud scoring: a 0-100 score with the reasons that produced it.

The service layer gathers ``FraudSignals`` from the database (velocity windows,
history, blocklists); this module only scores them, so the rules are testable
without a database. Points add up and the total is clamped to 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.money import currency

MAX_SCORE = 100

# Sliding windows the service layer counts over (seconds).
VELOCITY_WINDOW_S = 600  # card and IP velocity: the last 10 minutes
DECLINE_WINDOW_S = 3600  # card-testing: failed intents in the last hour

# Hard signals: each alone reaches the maximum score.
FRAUD_TEST_CARD_POINTS = 100
BLOCKLIST_POINTS = 100

# Card velocity (other intents from the same card fingerprint in the window).
# Tiers, not cumulative: the higher tier replaces the lower one.
CARD_VELOCITY_HIGH = 5  # more than this many ...
CARD_VELOCITY_HIGH_POINTS = 30
CARD_VELOCITY_EXTREME = 10
CARD_VELOCITY_EXTREME_POINTS = 50

# IP velocity: a shared office NAT legitimately sends many, so the bar is higher.
IP_VELOCITY_HIGH = 20
IP_VELOCITY_POINTS = 25

# Amount against the payer's own history, trusted only once there is some history.
PAYER_HISTORY_MIN = 3
PAYER_AMOUNT_HIGH_FACTOR = 5
PAYER_AMOUNT_HIGH_POINTS = 30
PAYER_AMOUNT_EXTREME_FACTOR = 10
PAYER_AMOUNT_EXTREME_POINTS = 45

# Amount against the merchant's typical ticket.
MERCHANT_AMOUNT_FACTOR = 20
MERCHANT_AMOUNT_POINTS = 20

# Card testing: several recent declines on one card means someone is probing it.
CARD_TESTING_DECLINES = 3  # at least this many
CARD_TESTING_POINTS = 40

# A payer never seen before spending a large sum: mild on its own, decisive with others.
FIRST_TIME_LARGE_MAJOR = 1000  # major units of the intent's currency
FIRST_TIME_LARGE_POINTS = 15

BLOCKLIST_KINDS = ("card_fingerprint", "wallet", "ip", "customer")


@dataclass(frozen=True)
class FraudSignals:
    amount: int
    currency: str
    is_fraud_test_card: bool
    card_velocity: int  # same card fingerprint, last VELOCITY_WINDOW_S, excluding this one
    ip_velocity: int  # same client IP, last VELOCITY_WINDOW_S
    payer_history_count: int  # earlier succeeded intents of this payer in this currency
    payer_history_avg: int | None  # their mean amount, minor units
    merchant_history_avg: int | None
    blocklisted: tuple[str, ...]  # BLOCKLIST_KINDS that matched
    recent_declines: int  # failed intents of this card in the last DECLINE_WINDOW_S


@dataclass(frozen=True)
class Reason:
    code: str
    points: int
    detail: str


@dataclass(frozen=True)
class RiskAssessment:
    score: int
    reasons: tuple[Reason, ...]

    def to_json(self) -> list[dict]:
        """The reasons as a list of JSON-ready dicts."""
        return [{"code": r.code, "points": r.points, "detail": r.detail} for r in self.reasons]


def _rules(s: FraudSignals) -> list[Reason]:
    reasons: list[Reason] = []
    if s.is_fraud_test_card:
        reasons.append(Reason("fraud_test_card", FRAUD_TEST_CARD_POINTS, "known fraud test card"))
    if s.blocklisted:
        kinds = ", ".join(sorted(set(s.blocklisted)))
        reasons.append(Reason("blocklisted", BLOCKLIST_POINTS, f"blocklist match: {kinds}"))

    if s.card_velocity > CARD_VELOCITY_EXTREME:
        points = CARD_VELOCITY_EXTREME_POINTS
    elif s.card_velocity > CARD_VELOCITY_HIGH:
        points = CARD_VELOCITY_HIGH_POINTS
    else:
        points = 0
    if points:
        detail = f"{s.card_velocity} other intents from this card in {VELOCITY_WINDOW_S} s"
        reasons.append(Reason("card_velocity", points, detail))

    if s.ip_velocity > IP_VELOCITY_HIGH:
        detail = f"{s.ip_velocity} intents from this IP in {VELOCITY_WINDOW_S} s"
        reasons.append(Reason("ip_velocity", IP_VELOCITY_POINTS, detail))

    # A zero or missing average says nothing about what is unusual: skip rather than divide.
    avg = s.payer_history_avg
    if s.payer_history_count >= PAYER_HISTORY_MIN and avg:
        if s.amount > PAYER_AMOUNT_EXTREME_FACTOR * avg:
            points, factor = PAYER_AMOUNT_EXTREME_POINTS, PAYER_AMOUNT_EXTREME_FACTOR
        elif s.amount > PAYER_AMOUNT_HIGH_FACTOR * avg:
            points, factor = PAYER_AMOUNT_HIGH_POINTS, PAYER_AMOUNT_HIGH_FACTOR
        else:
            points = 0
        if points:
            detail = f"amount over {factor}x this payer's average"
            reasons.append(Reason("amount_unusual_for_payer", points, detail))

    m_avg = s.merchant_history_avg
    if m_avg and s.amount > MERCHANT_AMOUNT_FACTOR * m_avg:
        detail = f"amount over {MERCHANT_AMOUNT_FACTOR}x this merchant's average"
        reasons.append(Reason("amount_unusual_for_merchant", MERCHANT_AMOUNT_POINTS, detail))

    if s.recent_declines >= CARD_TESTING_DECLINES:
        detail = f"{s.recent_declines} declines on this card in {DECLINE_WINDOW_S} s"
        reasons.append(Reason("card_testing", CARD_TESTING_POINTS, detail))

    if s.payer_history_count == 0 and s.amount >= currency(s.currency).minor(
        FIRST_TIME_LARGE_MAJOR
    ):
        detail = f"first payment from this payer, at least {FIRST_TIME_LARGE_MAJOR} {s.currency}"
        reasons.append(Reason("first_time_large_amount", FIRST_TIME_LARGE_POINTS, detail))
    return reasons


def assess(s: FraudSignals) -> RiskAssessment:
    """Score the signals 0-100 (sum of rule points, clamped) with the reasons."""
    reasons = tuple(_rules(s))
    return RiskAssessment(score=min(MAX_SCORE, sum(r.points for r in reasons)), reasons=reasons)


def decide(assessment: RiskAssessment, block_threshold: int) -> bool:
    """True if the intent must be blocked: score at or above the threshold."""
    return assessment.score >= block_threshold
