"""Response models: what shared.services.views returns, typed for the spec."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from intake.schemas.fields import CaptureMethod, CurrencyCode, IntentStatus, Priority
from shared.domain import fraud
from shared.domain.intent import Stage, Status
from shared.services.event_log import DELIVERY_STATUSES
from shared.services.events import EVENT_TYPES

Timestamp = Annotated[int, Field(description="Unix seconds.")]


class CardDetails(BaseModel):
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str


class CardOut(BaseModel):
    type: Literal["card"]
    card: CardDetails


class WalletOut(BaseModel):
    type: Literal["wallet"]
    wallet_id: str


class BankAccountOut(BaseModel):
    type: Literal["bank_account"]
    bank: str
    account: str


class RiskReason(BaseModel):
    code: str
    points: int
    detail: str


RiskLevel = Literal[tuple(level.value for level in fraud.RiskLevel)]  # type: ignore[valid-type]


class Risk(BaseModel):
    score: int = Field(description="0 to 100; blocked at the merchant's threshold.")
    level: RiskLevel | None = Field(
        description="Where the score fell: normal; elevated (the review band just under the"
        " block threshold: a review is opened, the payment goes on); highest (blocked)."
        " Null for intents scored before risk levels were recorded."
    )
    reasons: list[RiskReason]


class Review(BaseModel):
    """A review opened on an intent scored into the review band (Stripe's Radar review)."""

    id: str
    object: Literal["review"]
    payment_intent: str
    opened_reason: Literal["rule"]
    reason: Literal["rule"]
    risk_level: Literal["elevated"]
    risk_score: int
    livemode: bool


class PaymentIntent(BaseModel):
    id: str
    object: Literal["payment_intent"]
    amount: int
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    currency: CurrencyCode
    status: IntentStatus
    stage: Literal[tuple(s.value for s in Stage)]  # type: ignore[valid-type]
    capture_method: CaptureMethod
    priority: Priority
    payment_method: Annotated[CardOut | WalletOut | BankAccountOut, Field(discriminator="type")]
    description: str | None
    metadata: dict[str, str]
    customer: str | None
    fee: int | None
    net: int | None
    risk: Risk | None
    review: Review | None
    failure_code: str | None
    failure_message: str | None
    cancellation_reason: str | None
    settlement_status: Literal["pending", "settled"] | None
    hold_expires_at: Timestamp | None
    created: Timestamp
    livemode: bool


class Refund(BaseModel):
    id: str
    object: Literal["refund"]
    amount: int
    currency: CurrencyCode
    payment_intent: str
    status: str
    reason: str | None
    fee_refunded: int
    metadata: dict[str, str]
    created: Timestamp


class Settlement(BaseModel):
    id: str
    object: Literal["settlement"]
    amount: int
    currency: CurrencyCode
    priority: Priority
    intent_count: int
    created: Timestamp


class CustomerErasure(BaseModel):
    id: str
    object: Literal["customer_erasure"]
    intents_erased: int = Field(description="The customer's intents erased so far, in all.")
    fields: list[str] = Field(description="What was erased on each of them.")
    created: Timestamp
    livemode: bool


class EventData(BaseModel):
    object: Annotated[
        PaymentIntent | Refund | Settlement | Review | CustomerErasure,
        Field(discriminator="object"),
    ]


class Event(BaseModel):
    id: str
    object: Literal["event"]
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    created: Timestamp
    data: EventData


class DeliveryAttempt(BaseModel):
    attempt: int
    outcome: str
    status_code: int | None
    latency_ms: int | None
    error: str | None
    response_body: str | None
    created: Timestamp


class WebhookDelivery(BaseModel):
    id: str
    object: Literal["webhook_delivery"]
    event_id: str
    endpoint: str | None = Field(
        description="The webhook endpoint it goes to (null: made before endpoints existed)."
    )
    url: str
    status: Literal[DELIVERY_STATUSES]  # type: ignore[valid-type]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: Timestamp | None
    created: Timestamp
    completed_at: Timestamp | None
    attempt_history: list[DeliveryAttempt]


class WebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint"]
    url: str | None = Field(
        description="null only for a merchant's first endpoint before any URL was set."
    )
    enabled_events: list[Literal[(*EVENT_TYPES, "*")]]  # type: ignore[valid-type]
    status: Literal["enabled", "disabled"]
    description: str | None
    metadata: dict[str, str]
    previous_secret_expires_at: Timestamp | None = Field(
        description="While a rotated-out secret still signs too (a second `v1`); else null."
    )
    created: Timestamp
    livemode: Literal[False]
    secret: str | None = Field(
        None,
        description="The signing secret (`whsec_…`): only in the answer to a create or a"
        " rotation, never again (a replay of either under its Idempotency-Key shows null).",
    )


class DeletedWebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint"]
    deleted: Literal[True]


class Amount(BaseModel):
    currency: CurrencyCode
    amount: int


class PendingAmount(Amount):
    held: int = Field(description="Authorized, not yet captured.")


class Balance(BaseModel):
    object: Literal["balance"]
    available: list[Amount]
    pending: list[PendingAmount]
    livemode: bool


# One count per intent status.
ReportCounts = create_model("ReportCounts", **{s.value: (int, ...) for s in Status})


Day = Annotated[str, Field(json_schema_extra={"format": "date"})]
Week = Annotated[str, Field(pattern="^[0-9]{4}-W[0-9]{2}$")]
Month = Annotated[str, Field(pattern="^[0-9]{4}-[0-9]{2}$")]


class ReportFigures(BaseModel):
    currency: CurrencyCode
    counts: ReportCounts
    gross: int
    fees: int
    refunds: int
    net: int
    settled: int


class DailyReportRow(ReportFigures):
    object: Literal["daily_report_row"]
    date: Day


class WeeklyReportRow(ReportFigures):
    object: Literal["weekly_report_row"]
    week: Week


class MonthlyReportRow(ReportFigures):
    object: Literal["monthly_report_row"]
    month: Month


class PeriodReconciliation(BaseModel):
    status: Literal["balanced", "discrepancies", "incomplete"] = Field(
        description="`discrepancies` if any day's reconciliation found one; else `balanced`"
        " when the period is complete, `incomplete` when it is not."
    )
    days_with_discrepancies: list[Day]


class PeriodCoverage(BaseModel):
    first_day: Day
    last_day: Day = Field(description="Inclusive.")
    days: int = Field(description="Days in the period.")
    days_reported: int = Field(description="Days with a stored daily report, summed in `data`.")
    days_missing: list[Day] = Field(description="Days without a daily report (yet).")
    days_provisional: list[Day] = Field(
        description="Reported days whose report was built before the day ended."
    )
    complete: bool = Field(description="No day missing or provisional.")
    reconciliation: PeriodReconciliation


T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    object: Literal["list"]
    data: list[T]
    has_more: bool
    url: str


class PaymentIntentList(ListOf[PaymentIntent]):
    pass


class RefundList(ListOf[Refund]):
    pass


class EventList(ListOf[Event]):
    pass


class WebhookEndpointList(ListOf[WebhookEndpoint]):
    pass


class WebhookDeliveryList(ListOf[WebhookDelivery]):
    pass


class DailyReport(ListOf[DailyReportRow]):
    has_more: Literal[False]


class WeeklyReport(ListOf[WeeklyReportRow], PeriodCoverage):
    has_more: Literal[False]
    week: Week


class MonthlyReport(ListOf[MonthlyReportRow], PeriodCoverage):
    has_more: Literal[False]
    month: Month


class Token(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    refresh_token: str


class Revoked(BaseModel):
    """RFC 7009: an empty object, whether or not the token was known."""

    model_config = {"extra": "forbid"}


class JWK(BaseModel):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    alg: str
    use: Literal["sig"]
    x: str
    kid: str


class JWKS(BaseModel):
    keys: list[JWK]


class Health(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    postgres: Literal["ok"]
    redis: Literal["ok"]
    broker: Literal["ok"] | None = Field(
        None, description="RabbitMQ, when BROKER_URL is amqp (else Redis is the broker)."
    )


class Ready(BaseModel):
    status: Literal["ready"]
    checks: ReadyChecks


class Problem(BaseModel):
    """RFC 9457 problem details; ``code`` and ``param`` are Stripe's."""

    type: str = Field(json_schema_extra={"format": "uri"})
    title: str
    status: int
    detail: str
    code: str
    param: str | None = Field(None, description="The offending parameter, Stripe style.")
    request_id: str | None = None
    error: str | None = Field(None, description="OAuth endpoints: RFC 6749's error code.")
    error_description: str | None = None
    retry_after_s: int | None = Field(
        None, description="A locked operator account (423): seconds until it opens."
    )


class OpenAPIDocument(BaseModel):
    """An OpenAPI 3.1 document: free-form by nature."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict
    paths: dict
    components: dict


class OperatorSelf(BaseModel):
    object: Literal["operator"]
    id: str
    email: str
    role: Literal["admin", "support", "viewer"]


# --- operator API: merchants and operators (shared/services/merchant_admin.py, operator_admin.py).


class OperatorMerchantSummary(BaseModel):
    id: str
    object: Literal["merchant"]
    name: str
    suspended: bool
    suspended_at: Timestamp | None
    created: Timestamp


class OperatorMerchantLimit(BaseModel):
    currency: CurrencyCode
    scope: Literal["merchant", "payer"]
    per_transaction: int | None
    daily: int | None
    monthly: int | None


class OperatorMerchantClient(BaseModel):
    client_id: str
    scopes: list[str]
    cert_sha256: str | None
    created: Timestamp
    revoked_at: Timestamp | None


class OperatorMerchant(OperatorMerchantSummary):
    suspended_reason: str | None
    webhook_url: str | None = Field(description="Without its password and query (`***`).")
    webhook_secret_previous_expires_at: Timestamp | None = Field(
        description="While a rotated secret still signs too."
    )
    fraud_block_threshold: int | None = Field(description="None: the default.")
    limits: list[OperatorMerchantLimit]
    clients: list[OperatorMerchantClient] = Field(description="Never a secret.")


class OperatorMerchantList(ListOf[OperatorMerchantSummary]):
    pass


class OperatorMerchantCreated(BaseModel):
    """The new merchant's credentials: shown only in this response."""

    merchant_id: str
    client_id: str
    client_secret: str
    webhook_secret: str


class OperatorWebhookSecretRotated(BaseModel):
    """The new webhook secret: shown only in this response."""

    merchant_id: str
    webhook_secret: str
    previous_secret_expires_at: str | None = Field(
        description="ISO 8601; the old secret signs too until then (None: no overlap)."
    )


class OperatorAccount(BaseModel):
    id: str
    object: Literal["operator"]
    email: str
    role: Literal["admin", "support", "viewer"]
    password_temporary: bool
    disabled: bool
    disabled_at: Timestamp | None
    created: Timestamp


class OperatorAccountList(ListOf[OperatorAccount]):
    has_more: Literal[False]


class OperatorEnrolment(BaseModel):
    """The new operator's one-time enrolment: shown only in this response."""

    email: str
    role: Literal["admin", "support", "viewer"]
    otpauth_uri: str
    temporary_password: str


# --- the operator API (/v1/operator/...): payments, blocklist, reports, audit.


class OperatorIntent(PaymentIntent):
    merchant: str = Field(description="The merchant's id.")


class OperatorIntentList(ListOf[OperatorIntent]):
    pass


class LedgerTransfer(BaseModel):
    object: Literal["ledger_transfer"]
    id: int
    kind: str
    reason: str
    amount: int
    currency: CurrencyCode
    debit_account: str = Field(description="The debited account's code.")
    credit_account: str
    pending_id: int | None = Field(description="The pending transfer this one resolves.")
    created: Timestamp


class OperatorPaymentIntent(BaseModel):
    object: Literal["operator_payment_intent"]
    payment_intent: OperatorIntent
    events: list[Event] = Field(description="The intent's and its refunds' events, oldest first.")
    webhook_deliveries: list[WebhookDelivery]
    refunds: list[Refund]
    ledger_transfers: list[LedgerTransfer]


class BlocklistEntry(BaseModel):
    object: Literal["blocklist_entry"]
    id: str = Field(description="`kind:value`, the next page's cursor.")
    kind: str
    value: str
    reason: str | None
    created: Timestamp


class BlocklistList(ListOf[BlocklistEntry]):
    pass


class BlocklistChange(BaseModel):
    kind: str
    value: str
    blocked: bool


class DailyReportRun(BaseModel):
    object: Literal["daily_report_run"]
    date: str = Field(json_schema_extra={"format": "date"})
    rows: int
    sealed: bool
    sealed_days: list[str]
    duration_ms: int
    discrepancies: list[str]


class AuditEntry(BaseModel):
    object: Literal["audit_entry"]
    id: int
    at: Timestamp
    actor: str = Field(description="`operator:<email>` or `cli:<os user>`.")
    action: str
    target: str | None
    request_id: str | None
    source_ip: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditList(ListOf[AuditEntry]):
    pass


class OperatorToken(BaseModel):
    """POST /v1/operator/login and /v1/operator/refresh: a Bearer operator token."""

    access_token: str
    expires_in: int = Field(description="Seconds the token is good for (at most 900).")
    role: Literal["admin", "support", "viewer"]


class OperatorPasswordChanged(BaseModel):
    object: Literal["operator_password"]
    changed: Literal[True]
