"""Typed API objects: one dataclass per object the API returns.

``from_json`` keeps the fields it knows and the whole answer in ``raw``, so a
field the API adds later is still there (``obj.raw["new_field"]``) and never
breaks an older client.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="ApiObject")


@dataclass
class ApiObject:
    # Field name -> the class its value (or each item of its list) is made of.
    _nested: ClassVar[dict[str, type[ApiObject]]] = {}

    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    @classmethod
    def from_json(cls: type[T], data: dict[str, Any]) -> T:
        values = {}
        for f in dataclasses.fields(cls):
            if f.name == "raw" or f.name not in data:
                continue
            value, kind = data[f.name], cls._nested.get(f.name)
            if kind is not None and isinstance(value, list):
                value = [kind.from_json(v) for v in value]
            elif kind is not None and isinstance(value, dict):
                value = kind.from_json(value)
            values[f.name] = value
        return cls(**values, raw=data)

    def to_dict(self) -> dict[str, Any]:
        """The object as the API sent it."""
        return dict(self.raw)


@dataclass
class Card(ApiObject):
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    fingerprint: str | None = None


@dataclass
class PaymentMethod(ApiObject):
    _nested: ClassVar = {"card": Card}

    type: str = ""
    card: Card | None = None
    wallet_id: str | None = None


@dataclass
class RiskReason(ApiObject):
    code: str = ""
    points: int = 0
    detail: str = ""


@dataclass
class Risk(ApiObject):
    _nested: ClassVar = {"reasons": RiskReason}

    score: int = 0
    reasons: list[RiskReason] = field(default_factory=list)


@dataclass
class PaymentIntent(ApiObject):
    _nested: ClassVar = {"payment_method": PaymentMethod, "risk": Risk}

    id: str = ""
    object: str = "payment_intent"
    amount: int = 0
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    currency: str = ""
    status: str = ""
    stage: str = ""
    capture_method: str = ""
    priority: str = ""
    payment_method: PaymentMethod | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    customer: str | None = None
    fee: int | None = None
    net: int | None = None
    risk: Risk | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    cancellation_reason: str | None = None
    settlement_status: str | None = None
    hold_expires_at: int | None = None
    created: int = 0
    livemode: bool = False


@dataclass
class Refund(ApiObject):
    id: str = ""
    object: str = "refund"
    amount: int = 0
    currency: str = ""
    payment_intent: str = ""
    status: str = ""
    reason: str | None = None
    fee_refunded: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    created: int = 0


@dataclass
class Settlement(ApiObject):
    id: str = ""
    object: str = "settlement"
    amount: int = 0
    currency: str = ""
    priority: str = ""
    intent_count: int = 0
    created: int = 0


@dataclass
class Review(ApiObject):
    """A review opened on an intent scored into the review band (``review.opened``)."""

    id: str = ""
    object: str = "review"
    payment_intent: str = ""
    reason: str = ""
    risk_level: str = ""
    risk_score: int = 0


@dataclass
class CustomerErasure(ApiObject):
    """A customer's personal data erased from its payments (``customer.erased``)."""

    id: str = ""
    object: str = "customer_erasure"
    intents_erased: int = 0
    fields: list[str] = field(default_factory=list)
    created: int = 0


# The object an event carries, by its "object" field.
EVENT_OBJECTS: dict[str, type[ApiObject]] = {
    "payment_intent": PaymentIntent,
    "refund": Refund,
    "settlement": Settlement,
    "review": Review,
    "customer_erasure": CustomerErasure,
}


@dataclass
class Event(ApiObject):
    id: str = ""
    object: str = "event"
    type: str = ""
    created: int = 0
    # data.object, typed by its own "object" field (the raw dict if the kind is new).
    data: Any = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        event = super().from_json({k: v for k, v in data.items() if k != "data"})
        inner = (data.get("data") or {}).get("object")
        kind = EVENT_OBJECTS.get(inner.get("object")) if isinstance(inner, dict) else None
        event.data = kind.from_json(inner) if kind else inner
        event.raw = data
        return event


@dataclass
class DeliveryAttempt(ApiObject):
    attempt: int = 0
    outcome: str = ""
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    response_body: str | None = None
    created: int = 0


@dataclass
class WebhookDelivery(ApiObject):
    _nested: ClassVar = {"attempt_history": DeliveryAttempt}

    id: str = ""
    object: str = "webhook_delivery"
    event_id: str = ""
    url: str = ""
    status: str = ""
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: int | None = None
    created: int = 0
    completed_at: int | None = None
    endpoint: str | None = None
    attempt_history: list[DeliveryAttempt] = field(default_factory=list)


@dataclass
class WebhookEndpoint(ApiObject):
    """A merchant's webhook endpoint; ``secret`` only in the answers to create and rotate."""

    id: str = ""
    object: str = "webhook_endpoint"
    url: str | None = None
    enabled_events: list[str] = field(default_factory=list)
    status: str = ""  # enabled or disabled
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    previous_secret_expires_at: int | None = None
    created: int = 0
    secret: str | None = None
    deleted: bool = False


@dataclass
class Amount(ApiObject):
    currency: str = ""
    amount: int = 0
    held: int | None = None  # pending balances only: authorized, not yet captured


@dataclass
class Balance(ApiObject):
    _nested: ClassVar = {"available": Amount, "pending": Amount}

    object: str = "balance"
    available: list[Amount] = field(default_factory=list)
    pending: list[Amount] = field(default_factory=list)
    livemode: bool = False


@dataclass
class DailyReportRow(ApiObject):
    object: str = "daily_report_row"
    date: str = ""
    currency: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    gross: int = 0
    fees: int = 0
    refunds: int = 0
    net: int = 0
    settled: int = 0


@dataclass
class DailyReport(ApiObject):
    _nested: ClassVar = {"data": DailyReportRow}

    object: str = "list"
    data: list[DailyReportRow] = field(default_factory=list)
    has_more: bool = False
    url: str = ""


@dataclass
class PeriodReportRow(ApiObject):
    """One currency's sums over a week or a month (``week`` or ``month`` names it)."""

    object: str = ""
    week: str | None = None
    month: str | None = None
    currency: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    gross: int = 0
    fees: int = 0
    refunds: int = 0
    net: int = 0
    settled: int = 0


@dataclass
class PeriodReconciliation(ApiObject):
    status: str = ""  # balanced, discrepancies or incomplete
    days_with_discrepancies: list[str] = field(default_factory=list)


@dataclass
class PeriodReport(ApiObject):
    """A weekly or monthly report: the sum of its stored daily reports, and their coverage."""

    _nested: ClassVar = {"data": PeriodReportRow, "reconciliation": PeriodReconciliation}

    object: str = "list"
    data: list[PeriodReportRow] = field(default_factory=list)
    has_more: bool = False
    url: str = ""
    week: str | None = None
    month: str | None = None
    first_day: str = ""
    last_day: str = ""
    days: int = 0
    days_reported: int = 0
    days_missing: list[str] = field(default_factory=list)
    days_provisional: list[str] = field(default_factory=list)
    complete: bool = False
    reconciliation: PeriodReconciliation | None = None
