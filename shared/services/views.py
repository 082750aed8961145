"""Public representations: what the API, events and webhooks show of each row.

Pure functions from a row (or a plain value) to a JSON-ready dict. This is
the lowest module of shared.services: it imports none of the others, so every
use case, the events writer and the intake can use it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain.erasure import INTENT_FIELDS
from shared.domain.intent import Status


def intent_json(row) -> dict:
    """A payment intent: never the card number, never the token."""
    if row.pm_type == "card":
        payment_method = {
            "type": "card",
            "card": {
                "brand": row.card_brand,
                "last4": row.card_last4,
                "exp_month": row.card_exp_month,
                "exp_year": row.card_exp_year,
                "fingerprint": row.card_fingerprint,
            },
        }
    else:
        payment_method = {"type": "wallet", "wallet_id": row.wallet_id}
    return {
        "id": row.id,
        "object": "payment_intent",
        "amount": row.amount,
        "amount_capturable": row.amount_capturable,
        "amount_received": row.amount_received,
        "amount_refunded": row.amount_refunded,
        "currency": row.currency,
        "status": row.status,
        "stage": row.stage,
        "capture_method": row.capture_method,
        "priority": row.priority,
        "payment_method": payment_method,
        "description": row.description,
        "metadata": row.metadata or {},
        "customer": row.customer,
        "fee": row.fee_amount,
        "net": None
        if row.fee_amount is None or not row.amount_received
        else row.amount_received - row.fee_amount,
        "risk": None
        if row.risk_score is None
        else {"score": row.risk_score, "reasons": row.risk_reasons or []},
        "failure_code": row.failure_code,
        "failure_message": row.failure_message,
        "cancellation_reason": row.cancellation_reason,
        "settlement_status": row.settlement_status,
        "hold_expires_at": unix_seconds(row.hold_expires_at),
        "created": unix_seconds(row.created_at),
        "livemode": False,
    }


def refund_json(row) -> dict:
    """A refund."""
    return {
        "id": row.id,
        "object": "refund",
        "amount": row.amount,
        "currency": row.currency,
        "payment_intent": row.payment_intent_id,
        "status": row.status,
        "reason": row.reason,
        "fee_refunded": row.fee_refunded,
        "metadata": row.metadata or {},
        "created": unix_seconds(row.created_at),
    }


def settlement_json(row) -> dict:
    """A settlement (the ``settlement.paid`` event's object)."""
    return {
        "id": row.id,
        "object": "settlement",
        "amount": row.amount,
        "currency": row.currency,
        "priority": row.priority,
        "intent_count": row.intent_count,
        "created": unix_seconds(row.created_at),
    }


def customer_erasure_json(row) -> dict:
    """A customer erasure, as the API answers it and its event carries it: never the customer."""
    return {
        "id": row.id,
        "object": "customer_erasure",
        "intents_erased": row.intents_erased,
        "fields": list(INTENT_FIELDS),
        "created": unix_seconds(row.created_at),
        "livemode": False,
    }


def event_json(row) -> dict:
    """An event, as the API lists it and webhooks send it."""
    return {
        "id": row.id,
        "object": "event",
        "type": row.type,
        "created": unix_seconds(row.created_at),
        "data": {"object": row.data},
    }


def delivery_json(row, attempts=()) -> dict:
    """A webhook delivery, with its attempt history."""
    return {
        "id": row.id,
        "object": "webhook_delivery",
        "event_id": row.event_id,
        "url": row.url,
        "status": row.status,
        "attempts": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "next_attempt_at": unix_seconds(row.next_attempt_at) if row.status == "pending" else None,
        "created": unix_seconds(row.created_at),
        "completed_at": unix_seconds(row.completed_at),
        "attempt_history": [
            {
                "attempt": a.attempt,
                "outcome": a.outcome,
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "error": a.error,
                "response_body": a.response_body,
                "created": unix_seconds(a.created_at),
            }
            for a in attempts
        ],
    }


def report_row_json(row) -> dict:
    """One daily report row (counts for every status, amounts in minor units)."""
    return {
        "object": "daily_report_row",
        "date": row.report_date.isoformat(),
        "currency": row.currency,
        "counts": {s.value: int(row.counts.get(s.value, 0)) for s in Status},
        "gross": row.gross,
        "fees": row.fees,
        "refunds": row.refunds,
        "net": row.net,
        "settled": row.settled,
    }


def balance_json(balances: dict) -> dict:
    """The balance object from ``ledger.merchant_balances`` ({currency: amounts})."""
    currencies = sorted(balances)
    return {
        "object": "balance",
        "available": [{"currency": c, "amount": balances[c]["available"]} for c in currencies],
        "pending": [
            # held: credits_pending, not yet posted (e.g. awaiting capture).
            {"currency": c, "amount": balances[c]["pending"], "held": balances[c]["held"]}
            for c in currencies
        ],
        "livemode": False,
    }


def unix_seconds(value: datetime | None) -> int | None:
    """Unix seconds (the same instant whatever the datetime's zone)."""
    return None if value is None else int(value.astimezone(UTC).timestamp())
