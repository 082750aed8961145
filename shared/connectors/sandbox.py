"""The built-in sandbox card acquirer: Stripe's public test numbers, latency and failure injection.

Outcomes depend only on the card number, so the same request always gets the
same answer. Injected failures are random, but only ever transient, and a final
answer already given for an intent is replayed rather than re-rolled.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import OrderedDict

from shared.connectors.base import (
    APPROVED,
    CARD_DECLINED,
    DECLINED,
    EXPIRED_CARD,
    INSUFFICIENT_FUNDS,
    PROCESSING_ERROR,
    TRANSIENT_ERROR,
    AuthRequest,
    AuthResult,
)
from shared.domain.fraud import SandboxCard

# Stripe's Radar test cards: the fraud stage scores them by fiat, the acquirer
# approves them (a blocked one that gets this far shows the fraud stage failed).
RISK_TEST_CARDS: dict[str, SandboxCard] = {
    "4100000000000019": SandboxCard.FRAUD,
    "4000000000004954": SandboxCard.HIGHEST_RISK,
    "4000000000009235": SandboxCard.ELEVATED_RISK,
}

_DECLINES: dict[str, tuple[str, str, str]] = {
    # number: (outcome, code, message), messages as Stripe words them
    "4000000000000002": (DECLINED, CARD_DECLINED, "Your card was declined."),
    "4000000000009995": (DECLINED, INSUFFICIENT_FUNDS, "Your card has insufficient funds."),
    "4000000000000069": (DECLINED, EXPIRED_CARD, "Your card has expired."),
    "4000000000000119": (
        TRANSIENT_ERROR,
        PROCESSING_ERROR,
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}

# The documented test cards (the README's table): number -> (outcome, failure code).
TEST_CARDS: dict[str, tuple[str, str | None]] = {
    "4242424242424242": (APPROVED, None),
    **{number: (outcome, code) for number, (outcome, code, _) in _DECLINES.items()},
    **{number: (APPROVED, None) for number in RISK_TEST_CARDS},
}


def fraud_roles() -> dict[str, SandboxCard]:
    """Every documented test number and what it asks of the fraud rules.

    Each keeps its documented outcome: the velocity and behaviour rules leave
    these numbers alone, so using one a thousand times changes nothing.
    """
    return {number: RISK_TEST_CARDS.get(number, SandboxCard.PLAIN) for number in TEST_CARDS}


INJECTED_FAILURE_MESSAGE = "injected failure"
INVALID_NUMBER_MESSAGE = "Your card number is incorrect."
# Final answers remembered for replays; bounded so a long load test cannot grow it forever.
_REPLAY_CACHE_SIZE = 100_000


def luhn_valid(pan: str) -> bool:
    """True if ``pan`` is 12-19 digits with a valid Luhn check digit."""
    if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def auth_reference(intent_id: str) -> str:
    """The deterministic authorization reference for an intent."""
    return "auth_" + hashlib.sha256(intent_id.encode()).hexdigest()[:16]


class SandboxAcquirer:
    """Simulated acquirer for development, tests and load tests."""

    def __init__(
        self,
        latency_ms: int = 0,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be between 0 and 1")
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self._rng = rng or random.Random()
        # Callers run authorize in threads: the rng and the cache are shared state.
        self._lock = threading.Lock()
        self._final: OrderedDict[str, AuthResult] = OrderedDict()

    @classmethod
    def from_settings(cls, settings) -> SandboxAcquirer:
        """Build one from ``Settings`` (acquirer_latency_ms, acquirer_failure_rate)."""
        return cls(
            latency_ms=settings.acquirer_latency_ms,
            failure_rate=settings.acquirer_failure_rate,
        )

    def authorize(self, req: AuthRequest) -> AuthResult:
        """Authorize by test card number; idempotent by intent id."""
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        with self._lock:
            cached = self._final.get(req.intent_id)
            if cached is not None:
                return cached
            injected = self.failure_rate > 0 and self._rng.random() < self.failure_rate
        if injected:
            # Transient, so not remembered: the pipeline's retry gets a fresh roll.
            return AuthResult(TRANSIENT_ERROR, PROCESSING_ERROR, INJECTED_FAILURE_MESSAGE)
        result = self._decide(req)
        if result.outcome != TRANSIENT_ERROR:
            with self._lock:
                self._final[req.intent_id] = result
                if len(self._final) > _REPLAY_CACHE_SIZE:
                    self._final.popitem(last=False)
        return result

    @staticmethod
    def _decide(req: AuthRequest) -> AuthResult:
        scripted = _DECLINES.get(req.pan)
        if scripted is not None:
            outcome, code, message = scripted
            return AuthResult(outcome, code, message)
        if not luhn_valid(req.pan):
            return AuthResult(DECLINED, CARD_DECLINED, INVALID_NUMBER_MESSAGE)
        return AuthResult(APPROVED, reference=auth_reference(req.intent_id))
