"""Refunds as pure logic: request validation and the fee policy's integer math.

Fee policy: the fee is returned pro rata. A refund of ``r`` out of a captured
``R`` gives back the share of the fee that ``r`` bore, so the merchant bears
only the refunded share of its net. Why not Stripe's "fees are kept": a full
refund before settlement would then take more out of the merchant's pending
balance than the intent ever put there (amount > net). Pro rata, what an
intent left in pending never goes below zero, and settlement can simply move
what is left.

Rounding is cumulative: the fee returned so far is
``round_half_up(fee × refunded_so_far / R)`` and each refund gets the
difference, so partial refunds adding up to ``R`` return exactly the fee.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.validation import (
    MAX_ID_LEN,
    ValidationError,
    metadata_param,
    reject_unknown,
    require_object,
)
from shared.money import div_round_half_up, is_amount

REASONS = ("duplicate", "fraudulent", "requested_by_customer")
CREATE_FIELDS = {"payment_intent", "amount", "reason", "metadata"}


@dataclass(frozen=True)
class CreateRefund:
    payment_intent: str
    amount: int | None  # None: whatever is still refundable
    reason: str | None
    metadata: dict


def validate_create(body: object) -> CreateRefund:
    """Check a refund request's shape (bounds needing the intent come later)."""
    body = require_object(body)
    reject_unknown(body, CREATE_FIELDS)
    intent = body.get("payment_intent")
    if intent is None:
        raise ValidationError(
            "payment_intent", "Missing required param: payment_intent.", "parameter_missing"
        )
    if not isinstance(intent, str) or not intent or len(intent) > MAX_ID_LEN:
        raise ValidationError("payment_intent", "`payment_intent` must be an intent id.")
    amount = body.get("amount")
    if amount is not None:
        if not is_amount(amount):
            raise ValidationError(
                "amount",
                "`amount` must be an integer in the currency's minor unit (not a float or string).",
                "parameter_invalid_integer",
            )
        if amount < 1:
            raise ValidationError("amount", "`amount` must be at least 1.", "amount_too_small")
    reason = body.get("reason")
    if reason is not None and reason not in REASONS:
        raise ValidationError("reason", f"`reason` must be one of: {', '.join(REASONS)}.")
    return CreateRefund(intent, amount, reason, metadata_param(body.get("metadata")))


def fee_returned(fee: int, received: int, refunded: int) -> int:
    """The fee given back in total once ``refunded`` of ``received`` is refunded."""
    if received <= 0 or not 0 <= refunded <= received:
        raise ValueError("refunded must be between 0 and the received amount")
    return div_round_half_up(fee * refunded, received)


def fee_refund(fee: int, received: int, refunded_before: int, amount: int) -> int:
    """The part of the fee given back with one refund of ``amount``."""
    after = fee_returned(fee, received, refunded_before + amount)
    return after - fee_returned(fee, received, refunded_before)


def unsettled_net(received: int, fee: int, refunded: int) -> int:
    """An unsettled intent's net still in pending, after refunds taken from it.

    Every refund of an unsettled intent came out of pending, each costing the
    merchant its amount less the fee returned; the rest is what settles.
    """
    return (received - fee) - (refunded - fee_returned(fee, received, refunded))
