"""Rule-based fraud scoring: a 0-100 score with the reasons that produced it.

The service layer gathers ``FraudSignals`` from the database (velocity windows,
history, blocklists); this module only scores them, so the rules are testable
without a database. Points add up and the total is clamped to 100; the score
then falls into a risk level against the merchant's ``Thresholds``: at or over
the block threshold ``highest`` (blocked), in the review band just below it
``elevated`` (a review is opened, the payment goes on), else ``normal``.

The sandbox's documented test cards keep their documented outcome however
often they are used: the velocity and behaviour rules do not score them, and
the risk test cards (Stripe's Radar test numbers) score by fiat. A blocklist
entry is an operator's explicit act, so it applies to them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.money import currency

MAX_SCORE = 100

# Sliding windows the service layer counts over (seconds).
VELOCITY_WINDOW_S = 600  # card and IP velocity: the last 10 minutes
DECLINE_WINDOW_S = 3600  # card-testing: failed intents in the last hour

# Hard signals: each alone reaches the maximum score.
FRAUD_TEST_CARD_POINTS = 100
HIGHEST_RISK_TEST_CARD_POINTS = 100
BLOCKLIST_POINTS = 100

# The review band: this many points below the merchant's block threshold
# (65-74 under the default 75): risky enough to look at, not to refuse.
REVIEW_BAND = 10

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


class RiskLevel(StrEnum):
    NORMAL = "normal"
    ELEVATED = "elevated"  # in the review band: a review is opened, the payment goes on
    HIGHEST = "highest"  # at or over the block threshold: blocked


class SandboxCard(StrEnum):
    """What a documented sandbox test card asks of the rules."""

    PLAIN = "plain"  # e.g. 4242...: its outcome is the acquirer's, never the rules'
    ELEVATED_RISK = "elevated_risk"  # 4000000000009235: scored into the review band
    HIGHEST_RISK = "highest_risk"  # 4000000000004954: scored 100, blocked
    FRAUD = "fraud"  # 4100000000000019: scored 100, blocked


@dataclass(frozen=True)
class Thresholds:
    """Where a merchant's scores turn elevated (``review``) and highest (``block``)."""

    block: int
    review: int

    @classmethod
    def below(cls, block: int, band: int = REVIEW_BAND) -> Thresholds:
        """The block threshold and a review band of ``band`` points under it.

        A zero score is never reviewed, so the band starts at 1 at the lowest;
        a threshold of 0 or 1 leaves no band (everything scored is blocked).
        """
        return cls(block=block, review=max(block - max(band, 1), 1))

    def level(self, score: int) -> RiskLevel:
        """The risk level of a score."""
        if score >= self.block:
            return RiskLevel.HIGHEST
        if score >= self.review:
            return RiskLevel.ELEVATED
        return RiskLevel.NORMAL


@dataclass(frozen=True)
class FraudSignals:
    amount: int
    currency: str
    test_card: SandboxCard | None  # a documented sandbox test card, or None: any other number
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
    level: RiskLevel

    @property
    def blocked(self) -> bool:
        return self.level is RiskLevel.HIGHEST

    @property
    def review(self) -> bool:
        """True if a review is opened: elevated risk, not blocked."""
        return self.level is RiskLevel.ELEVATED

    def to_json(self) -> list[dict]:
        """The reasons as a list of JSON-ready dicts."""
        return [{"code": r.code, "points": r.points, "detail": r.detail} for r in self.reasons]


def _test_card(card: SandboxCard, t: Thresholds) -> list[Reason]:
    if card is SandboxCard.FRAUD:
        return [Reason("fraud_test_card", FRAUD_TEST_CARD_POINTS, "known fraud test card")]
    if card is SandboxCard.HIGHEST_RISK:
        points = HIGHEST_RISK_TEST_CARD_POINTS
        return [Reason("highest_risk_test_card", points, "test card: highest risk")]
    if card is SandboxCard.ELEVATED_RISK:
        # The floor of the merchant's own band: reviewed, not blocked, at any threshold
        # that leaves a band (2 and up).
        return [Reason("elevated_risk_test_card", t.review, "test card: elevated risk")]
    return []


def _rules(s: FraudSignals, t: Thresholds) -> list[Reason]:
    reasons: list[Reason] = [] if s.test_card is None else _test_card(s.test_card, t)
    if s.blocklisted:
        kinds = ", ".join(sorted(set(s.blocklisted)))
        reasons.append(Reason("blocklisted", BLOCKLIST_POINTS, f"blocklist match: {kinds}"))
    if s.test_card is not None:
        # Velocity and behaviour would turn the documented card into a gamble.
        return reasons

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


def assess(s: FraudSignals, t: Thresholds) -> RiskAssessment:
    """Score the signals 0-100 (sum of rule points, clamped) with the reasons and level."""
    reasons = tuple(_rules(s, t))
    score = min(MAX_SCORE, sum(r.points for r in reasons))
    return RiskAssessment(score=score, reasons=reasons, level=t.level(score))
