"""The request mix shared by the bench and the chaos load (the locustfile has its own:
it imports nothing from the project).

~85 % approved (a fresh Luhn-valid Visa per request, so every payer is new),
~15 % spread over the sandbox's decline cards; priorities 20/60/20 %
(instant/standard/economy); capture 85 % automatic, 15 % manual. The
transient ``processing_error`` card is kept rare: it is retried with back-off
and would mostly measure the retry schedule.

The decline cards are fixed numbers, used over and over: the fraud rules leave
the sandbox's documented numbers alone, so each reaches the acquirer and fails
with its own code (4100000000000019 is blocked by the fraud stage, every time).
"""

from __future__ import annotations

import random
import uuid

from tests.factories import (
    DECLINE,
    EXPIRED,
    FRAUD,
    INSUFFICIENT,
    PROCESSING_ERROR,
    card_body,
    random_visa,
)

# Share of all requests per decline card (sums to 0.15).
DECLINE_CARDS = (
    (DECLINE, 0.035),
    (INSUFFICIENT, 0.035),
    (EXPIRED, 0.035),
    (FRAUD, 0.035),
    (PROCESSING_ERROR, 0.01),
)
PRIORITIES = (("instant", 0.20), ("standard", 0.60), ("economy", 0.20))
MANUAL_CAPTURE_SHARE = 0.15
# Minor units (USD cents): $1..$200, well below the fraud rules' "first-time
# large amount" bar, so approved cards are approved.
AMOUNT_RANGE = (100, 20_000)


def _pick(rng: random.Random, weighted) -> str:
    x = rng.random()
    for value, share in weighted:
        x -= share
        if x < 0:
            return value
    return weighted[-1][0]


def card_number(rng: random.Random) -> str:
    x = rng.random()
    for number, share in DECLINE_CARDS:
        x -= share
        if x < 0:
            return number
    return random_visa(rng)


def intent_body(rng: random.Random) -> dict:
    """One POST /v1/payment_intents body from the mix."""
    return card_body(
        card_number(rng),
        amount=rng.randint(*AMOUNT_RANGE),
        capture_method="manual" if rng.random() < MANUAL_CAPTURE_SHARE else "automatic",
        priority=_pick(rng, PRIORITIES),
    )


def idempotency_key() -> str:
    return "bench-" + uuid.uuid4().hex
