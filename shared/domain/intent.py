"""The payment intent's lifecycle: statuses, pipeline stages, outcomes."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class Stage(StrEnum):
    RECEIVED = "received"
    LIMITS_CHECKED = "limits_checked"
    RISK_SCORED = "risk_scored"
    FEE_COMPUTED = "fee_computed"
    AUTHORIZED = "authorized"


class FailureCode(StrEnum):
    LIMIT_EXCEEDED = "limit_exceeded"
    FRAUD_SUSPECTED = "fraud_suspected"
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    PROCESSING_ERROR = "processing_error"
    # A bank of a bank_account payment did not answer, or refused for another reason
    # than funds, before the decision: both banks were told to abort.
    BANK_UNAVAILABLE = "bank_unavailable"


CAPTURE_METHODS = ("automatic", "manual")
PRIORITIES = ("instant", "standard", "economy")
# Statuses an intent never leaves.
FINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})
# Statuses from which a merchant may cancel.
CANCELABLE = frozenset({Status.PROCESSING, Status.REQUIRES_CAPTURE})

FAILURE_MESSAGES = {
    FailureCode.LIMIT_EXCEEDED: "The payment exceeds a transaction, daily or monthly limit.",
    FailureCode.FRAUD_SUSPECTED: "The payment was blocked as likely fraudulent.",
    FailureCode.CARD_DECLINED: "Your card was declined.",
    FailureCode.INSUFFICIENT_FUNDS: "The payer has insufficient funds.",
    FailureCode.EXPIRED_CARD: "Your card has expired.",
    FailureCode.PROCESSING_ERROR: "An error occurred while processing the payment.",
    FailureCode.BANK_UNAVAILABLE: "A bank of the transfer was unavailable; nothing was moved.",
}
