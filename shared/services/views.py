"""Public representations: what the API, events and webhooks show of each row.

Pure functions from a row (or a plain value) to a JSON-ready dict. This is
the lowest module of shared.services: it imports none of the others, so every
use case, the events writer and the intake can use it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain.erasure import INTENT_FIELDS
from shared.domain.fraud import RiskLevel
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
    elif row.pm_type == "bank_account":
        payment_method = {"type": "bank_account", "bank": row.bank, "account": row.bank_account}
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
        else {"score": row.risk_score, "level": row.risk_level, "reasons": row.risk_reasons or []},
        "review": review_json(row.id, row.risk_score)
        if row.risk_level == RiskLevel.ELEVATED
        else None,
        "failure_code": row.failure_code,
        "failure_message": row.failure_message,
        "cancellation_reason": row.cancellation_reason,
        "settlement_status": row.settlement_status,
        "hold_expires_at": unix_seconds(row.hold_expires_at),
        "created": unix_seconds(row.created_at),
        "livemode": False,
    }


def review_json(intent_id: str, risk_score: int) -> dict:
    """The review an elevated risk opened on an intent (Stripe's Radar review object).

    One review per intent at most, so its id is the intent's own suffix: the
    event and the intent name it alike without a table of reviews.
    """
    return {
        "id": "prv_" + intent_id.removeprefix("pi_"),
        "object": "review",
        "payment_intent": intent_id,
        # Stripe's words: opened by a rule (the review band), still open for that reason.
        "opened_reason": "rule",
        "reason": "rule",
        "risk_level": RiskLevel.ELEVATED.value,
        "risk_score": risk_score,
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
        "endpoint": row.endpoint_id,
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


def endpoint_json(row, secret: str | None = None, now: datetime | None = None) -> dict:
    """A webhook endpoint; its ``secret`` only when just made or rotated.

    ``previous_secret_expires_at``: while a rotated-out secret still signs (as of ``now``).
    """
    expires = row.secret_prev_expires_at
    now = now or datetime.now(UTC)
    overlapping = row.secret_prev_enc is not None and expires is not None and expires > now
    out = {
        "id": row.id,
        "object": "webhook_endpoint",
        "url": row.url,
        "enabled_events": list(row.enabled_events),
        "status": row.status,
        "description": row.description,
        "metadata": row.metadata or {},
        "previous_secret_expires_at": unix_seconds(expires) if overlapping else None,
        "created": unix_seconds(row.created_at),
        "livemode": False,
    }
    if secret is not None:
        out["secret"] = secret
    return out


def _figures(row) -> dict:
    """A report row's currency, counts for every status and amounts (minor units)."""
    return {
        "currency": row.currency,
        "counts": {s.value: int(row.counts.get(s.value, 0)) for s in Status},
        "gross": row.gross,
        "fees": row.fees,
        "refunds": row.refunds,
        "net": row.net,
        "settled": row.settled,
    }


def report_row_json(row) -> dict:
    """One daily report row."""
    return {"object": "daily_report_row", "date": row.report_date.isoformat(), **_figures(row)}


PERIOD_ROW_OBJECTS = {"week": "weekly_report_row", "month": "monthly_report_row"}


def period_report_json(report, url: str) -> dict:
    """A weekly or monthly report: its days' coverage and reconciliation, sums per currency."""
    period, cov = report.period, report.coverage
    return {
        "object": "list",
        "url": url,
        "has_more": False,
        period.kind: period.label,
        "first_day": period.first_day.isoformat(),
        "last_day": period.last_day.isoformat(),
        "days": len(period.days),
        "days_reported": cov.days_reported,
        "days_missing": [d.isoformat() for d in cov.days_missing],
        "days_provisional": [d.isoformat() for d in cov.days_provisional],
        "complete": cov.complete,
        "reconciliation": {
            "status": cov.reconciliation,
            "days_with_discrepancies": [d.isoformat() for d in cov.days_with_discrepancies],
        },
        "data": [
            {"object": PERIOD_ROW_OBJECTS[period.kind], period.kind: period.label, **_figures(t)}
            for t in report.totals
        ],
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
