"""Schemas of the OpenAPI document: the intent, the problem object, tokens."""

from __future__ import annotations

from shared.domain.intent import CAPTURE_METHODS, PRIORITIES, Status
from shared.money import CURRENCIES


def ref(name: str) -> dict:
    """A JSON reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


INT = {"type": "integer", "minimum": 1}
_STR = {"type": ["string", "null"]}


def schemas() -> dict:
    """The component schemas of the OpenAPI document."""
    card_in = {
        "type": "object",
        "additionalProperties": False,
        "required": ["number", "exp_month", "exp_year"],
        "properties": {
            "number": {"type": "string"},
            "exp_month": {"type": "integer", "minimum": 1, "maximum": 12},
            "exp_year": {"type": "integer"},
            "cvc": {"type": "string", "description": "Checked, never stored."},
        },
    }
    payment_method = {
        "oneOf": [
            {
                "type": "object",
                "required": ["type", "card"],
                "additionalProperties": False,
                "properties": {"type": {"const": "card"}, "card": card_in},
            },
            {
                "type": "object",
                "required": ["type", "wallet_id"],
                "additionalProperties": False,
                "properties": {"type": {"const": "wallet"}, "wallet_id": {"type": "string"}},
            },
        ]
    }
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "code": {"type": "string"},
                "param": {"type": "string"},
                "request_id": {"type": "string"},
            },
        },
        "CreatePaymentIntent": {
            "type": "object",
            "additionalProperties": False,
            "required": ["amount", "currency", "payment_method"],
            "properties": {
                "amount": {**INT, "description": "Integer, in the currency's minor unit."},
                "currency": {"enum": list(CURRENCIES)},
                "payment_method": payment_method,
                "capture_method": {"enum": list(CAPTURE_METHODS), "default": "automatic"},
                "priority": {"enum": list(PRIORITIES), "default": "standard"},
                "description": {"type": "string", "maxLength": 1000},
                "metadata": {
                    "type": "object",
                    "maxProperties": 50,
                    "additionalProperties": {"type": "string", "maxLength": 500},
                },
                "customer": {"type": "string", "maxLength": 255},
            },
        },
        "PaymentIntent": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "payment_intent"},
                "amount": INT,
                "amount_capturable": {"type": "integer"},
                "amount_received": {"type": "integer"},
                "amount_refunded": {"type": "integer"},
                "currency": {"type": "string"},
                "status": {"enum": [s.value for s in Status]},
                "stage": {"type": "string"},
                "capture_method": {"enum": list(CAPTURE_METHODS)},
                "priority": {"enum": list(PRIORITIES)},
                "payment_method": {"type": "object"},
                "description": _STR,
                "metadata": {"type": "object"},
                "customer": _STR,
                "fee": {"type": ["integer", "null"]},
                "net": {"type": ["integer", "null"]},
                "risk": {"type": ["object", "null"]},
                "failure_code": _STR,
                "failure_message": _STR,
                "cancellation_reason": _STR,
                "settlement_status": _STR,
                "hold_expires_at": {"type": ["integer", "null"]},
                "created": {"type": "integer"},
                "livemode": {"type": "boolean"},
            },
        },
        "PaymentIntentList": {
            "type": "object",
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": ref("PaymentIntent")},
                "has_more": {"type": "boolean"},
                "url": {"type": "string"},
            },
        },
        "Token": {
            "type": "object",
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer"},
                "scope": {"type": "string"},
                "refresh_token": {"type": "string"},
            },
        },
    }
