"""Request models: bodies, query strings and the Idempotency-Key header.

Strict (no coercion) and closed (unknown fields refused), as the domain's checks are.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel

from intake.listing import MAX_LIMIT
from intake.schemas.fields import (
    Amount,
    CaptureMethod,
    CardNumber,
    Currency,
    Cvc,
    IntentStatus,
    Metadata,
    Priority,
    QueryInt,
    text,
)
from shared.domain import cards, report_periods, validation
from shared.domain.fraud import BLOCKLIST_KINDS
from shared.domain.limits import SCOPES as LIMIT_SCOPES
from shared.domain.merchant_admin import (
    MAX_NAME_LEN,
    MAX_OVERLAP_HOURS,
    MAX_REASON_LEN,
    MAX_URL_LEN,
)
from shared.domain.operators import ROLES as OPERATOR_ROLES
from shared.domain.refunds import REASONS
from shared.domain.webhook_endpoints import MAX_ENABLED_EVENTS, WILDCARD
from shared.services.event_log import DELIVERY_STATUSES
from shared.services.events import EVENT_TYPES
from shared.services.intents import CANCELLATION_REASONS


class Closed(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Card(Closed):
    number: CardNumber
    exp_month: Annotated[int, Field(ge=1, le=12)]
    # This year to 50 years ahead, as of the process's start (a month already past this
    # year is a 400 `invalid_expiry_year`); the document is built from the same model.
    exp_year: Annotated[
        int,
        Field(
            ge=date.today().year,
            le=date.today().year + cards.MAX_YEARS_AHEAD,
            description="Four digits; this month or later (else 400).",
        ),
    ]
    cvc: Cvc | None = Field(None, description="Checked, never stored.")


class CardMethod(Closed):
    type: Literal["card"]
    card: Card


class WalletMethod(Closed):
    type: Literal["wallet"]
    wallet_id: text(40, 1)


class BankAccountMethod(Closed):
    type: Literal["bank_account"]
    bank: Annotated[
        str,
        Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="A bank of the BANKS setting."),
    ]
    account: Annotated[
        str,
        Field(
            pattern=r"^acc_[0-9a-f]{1,60}$",
            description="The payer's account at that bank (debited by two-phase commit).",
        ),
    ]


class CreatePaymentIntent(Closed):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "amount": 1050,
                    "currency": "USD",
                    "priority": "instant",
                    "description": "Order 1001",
                    "metadata": {"order": "1001"},
                    "payment_method": {
                        "type": "card",
                        "card": {
                            "number": "4242424242424242",
                            "exp_month": 12,
                            "exp_year": date.today().year + 4,
                            "cvc": "123",
                        },
                    },
                }
            ]
        }
    )

    amount: Amount
    currency: Currency
    payment_method: Annotated[
        CardMethod | WalletMethod | BankAccountMethod, Field(discriminator="type")
    ]
    capture_method: CaptureMethod = "automatic"
    priority: Priority = "standard"
    description: text(validation.MAX_DESCRIPTION_LEN) | None = None
    metadata: Metadata | None = None
    customer: text(validation.MAX_ID_LEN) | None = None


class CapturePaymentIntent(Closed):
    amount_to_capture: Amount | None = Field(None, description="Default: all that is capturable.")


class CancelPaymentIntent(Closed):
    cancellation_reason: Literal[CANCELLATION_REASONS] | None = None  # type: ignore[valid-type]


class CreateRefund(Closed):
    payment_intent: text(validation.MAX_ID_LEN, 1)
    amount: Amount | None = Field(None, description="Default: all that is still refundable.")
    reason: Literal[REASONS] | None = None  # type: ignore[valid-type]
    metadata: Metadata | None = None


class Redeliver(Closed):
    """The event is named by the path."""

    endpoint: text(validation.MAX_ID_LEN, 1) | None = Field(
        None,
        description="The enabled webhook endpoint to send it to (`we_…`); default: the only"
        " enabled endpoint that receives its type (several: name one, else 400).",
    )


# --- webhook endpoints (intake/resources/webhook_endpoints.py).

EnabledEvents = Annotated[
    list[Literal[(*EVENT_TYPES, WILDCARD)]],  # type: ignore[valid-type]
    Field(
        min_length=1,
        max_length=MAX_ENABLED_EVENTS,
        description='Event types the endpoint receives, or `["*"]` for every type (not both).',
    ),
]
EndpointUrl = Annotated[
    text(MAX_URL_LEN, 1),
    Field(description="http(s); a public address unless WEBHOOK_ALLOW_PRIVATE (else 400)."),
]


class CreateWebhookEndpoint(Closed):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/hooks",
                    "enabled_events": ["payment_intent.succeeded", "refund.succeeded"],
                    "description": "Fulfilment",
                }
            ]
        }
    )

    url: EndpointUrl
    enabled_events: EnabledEvents
    description: text(validation.MAX_DESCRIPTION_LEN) | None = None
    metadata: Metadata | None = None
    disabled: bool = Field(False, description="Create it switched off (status `disabled`).")


class UpdateWebhookEndpoint(Closed):
    """Only the fields given change."""

    url: EndpointUrl | None = Field(None, description="Pending retries go to the new URL.")
    enabled_events: EnabledEvents | None = None
    description: text(validation.MAX_DESCRIPTION_LEN) | None = Field(
        None, description='`""` clears it.'
    )
    metadata: Metadata | None = Field(
        None, description='Keys given are set; a key given `""` is removed.'
    )
    disabled: bool | None = Field(
        None, description="true: nothing more is sent to it (pending deliveries are canceled)."
    )


class RotateWebhookEndpointSecret(Closed):
    overlap_hours: Annotated[float, Field(ge=0, le=MAX_OVERLAP_HOURS)] | None = Field(
        None, description="How long the old secret still signs; default WEBHOOK_ROTATION_OVERLAP_H."
    )


class EraseCustomer(Closed):
    """No fields: the customer is named by the path."""


class OperatorLogin(Closed):
    email: text(254, 1)
    password: text(1024, 1)
    totp: text(16, 1) = Field(description="The authenticator app's current 6-digit code.")


class OperatorPasswordChange(Closed):
    email: text(254, 1)
    current_password: text(1024, 1)
    new_password: text(1024, 1) = Field(
        description="At least 12 characters, not the email, not a common password."
    )
    totp: text(16, 1) = Field(description="A code not used before (each is good once).")


class OperatorRefresh(Closed):
    """No fields: the operator token in the Authorization header is refreshed."""


class _OAuth(BaseModel):
    # RFC 6749 §3.1: unknown parameters are ignored, so the models stay open (to strings:
    # a form carries nothing else, and a repeated form key is refused).
    model_config = ConfigDict(strict=True, extra="allow")
    __pydantic_extra__: dict[str, str]

    client_id: text() | None = Field(None, description="Or HTTP Basic client authentication.")
    client_secret: text() | None = None


class ClientCredentialsGrant(_OAuth):
    grant_type: Literal["client_credentials"]
    scope: text() | None = Field(
        None,
        description="Space-separated scopes, a subset of the client's (default: all of them);"
        " `payments` is a deprecated alias for all of them.",
    )


class RefreshTokenGrant(_OAuth):
    grant_type: Literal["refresh_token"]
    refresh_token: text(min_length=1)
    scope: text() | None = Field(
        None, description="Narrows this access token; the family keeps its scopes."
    )


class TokenRequest(
    RootModel[
        Annotated[ClientCredentialsGrant | RefreshTokenGrant, Field(discriminator="grant_type")]
    ]
):
    """A token request, by grant type."""


class RevokeRequest(_OAuth):
    token: text(min_length=1)
    token_type_hint: text() | None = None


# --- query strings: every value arrives as text, so each field says how to read it.


class _Query(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Page(_Query):
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), QueryInt] = 10
    starting_after: text() | None = Field(None, description="An id from the previous page.")


class IntentQuery(Page):
    status: IntentStatus | None = None


class RefundQuery(Page):
    payment_intent: text() | None = None


class EventQuery(Page):
    type: Literal[EVENT_TYPES] | None = None  # type: ignore[valid-type]


class DeliveryQuery(Page):
    event_id: text() | None = None
    endpoint: text() | None = Field(None, description="A webhook endpoint's id (`we_…`).")
    status: Literal[DELIVERY_STATUSES] | None = None  # type: ignore[valid-type]


def _a_date(value: str) -> str:
    date.fromisoformat(value)  # ValueError (a refusal) for 2026-02-30
    return value


class ReportQuery(_Query):
    date: Annotated[
        str,
        Field(pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}$", json_schema_extra={"format": "date"}),
        AfterValidator(_a_date),
    ]


def _a_week(value: str) -> str:
    report_periods.week(value)  # ValidationError (a refusal) for 2025-W53
    return value


def _a_month(value: str) -> str:
    report_periods.month(value)
    return value


class WeeklyReportQuery(_Query):
    week: Annotated[
        str,
        Field(
            pattern="^[0-9]{4}-W(0[1-9]|[1-4][0-9]|5[0-3])$",
            description="An ISO week, Monday to Sunday UTC (2026-W48). A week its year does"
            " not have (W53 of a 52-week year), or one that has not begun, is a 400.",
        ),
        AfterValidator(_a_week),
    ]


class MonthlyReportQuery(_Query):
    month: Annotated[
        str,
        Field(
            pattern="^[0-9]{4}-(0[1-9]|1[0-2])$",
            description="A calendar month, UTC (2026-11). One that has not begun is a 400.",
        ),
        AfterValidator(_a_month),
    ]


class NoQuery(_Query):
    """No query parameters."""


# --- operator API: merchants and operators (intake/resources/operator/merchants.py).


class OperatorCreateMerchant(Closed):
    name: text(MAX_NAME_LEN, 1) = Field(description="Not blank.")
    webhook_url: text(MAX_URL_LEN) | None = Field(
        None, description="http(s); a public address unless WEBHOOK_ALLOW_PRIVATE (else 400)."
    )


class OperatorSuspendMerchant(Closed):
    reason: text(MAX_REASON_LEN) | None = Field(None, description="Shown to operators only.")


class OperatorResumeMerchant(Closed):
    """No fields: the merchant is named by the path."""


PositiveLimit = Annotated[int, Field(ge=1, description="Minor units.")]


class OperatorSetLimits(Closed):
    currency: Currency
    scope: Literal[LIMIT_SCOPES] = "merchant"  # type: ignore[valid-type]
    per_transaction: PositiveLimit | None = Field(None, description="None: the default.")
    daily: PositiveLimit | None = Field(None, description="None: the default.")
    monthly: PositiveLimit | None = Field(None, description="None: the default.")


class OperatorSetFraudThreshold(Closed):
    threshold: Annotated[int, Field(ge=0, le=100, description="Block at this risk score.")]


class OperatorSetWebhookUrl(Closed):
    url: text(MAX_URL_LEN, 1) = Field(
        description="http(s); a public address unless WEBHOOK_ALLOW_PRIVATE (else 400)."
    )


class OperatorRotateWebhookSecret(Closed):
    overlap_hours: Annotated[float, Field(ge=0, le=MAX_OVERLAP_HOURS)] | None = Field(
        None, description="How long the old secret still signs; default WEBHOOK_ROTATION_OVERLAP_H."
    )


class OperatorCreateOperator(Closed):
    email: text(254, 1)
    role: Literal[OPERATOR_ROLES]  # type: ignore[valid-type]


class OperatorDisableOperator(Closed):
    """No fields: the operator is named by the path."""


# --- the operator API (/v1/operator/...): payments, blocklist, reports, audit.

OperatorLimit = Annotated[int, Field(ge=1, le=MAX_LIMIT), QueryInt]
Instant = Annotated[
    text(40),
    Field(description="Unix seconds or ISO 8601 (a date alone: its midnight UTC; no zone: UTC)."),
]
BlockKind = Literal[BLOCKLIST_KINDS]  # type: ignore[valid-type]


class OperatorIntentQuery(Page):
    limit: OperatorLimit = 20
    merchant: text(validation.MAX_ID_LEN) | None = Field(None, description="A merchant id.")
    status: IntentStatus | None = None
    last4: Annotated[str, Field(pattern="^[0-9]{4}$")] | None = None
    created_gte: Instant | None = None
    created_lte: Instant | None = None


class OperatorRefund(Closed):
    payment_intent: text(validation.MAX_ID_LEN, 1)
    amount: Amount | None = Field(None, description="Default: all that is still refundable.")
    reason: Literal[REASONS] | None = None  # type: ignore[valid-type]


class BlocklistQuery(Page):
    limit: OperatorLimit = 50
    starting_after: text() | None = Field(None, description="An entry's id (`kind:value`).")
    kind: BlockKind | None = None


class BlockEntry(Closed):
    kind: BlockKind
    value: text(validation.MAX_ID_LEN, 1) = Field(
        description="A card's fingerprint (payment_method.card.fingerprint), a wallet id,"
        " an IP address or a customer."
    )
    reason: text(validation.MAX_ID_LEN) | None = None


class UnblockEntry(Closed):
    """In the body or the query string (not both)."""

    kind: BlockKind | None = None
    value: text(validation.MAX_ID_LEN, 1) | None = None


class UnblockQuery(_Query):
    kind: BlockKind | None = None
    value: text(validation.MAX_ID_LEN, 1) | None = None


class DailyReportRerun(Closed):
    date: Annotated[
        str,
        Field(pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}$", json_schema_extra={"format": "date"}),
        AfterValidator(_a_date),
    ]


class AuditQuery(Page):
    limit: OperatorLimit = 50
    starting_after: Annotated[str, Field(pattern="^[0-9]{1,18}$")] | None = Field(
        None, description="An audit entry's id."
    )
    actor: text(validation.MAX_ID_LEN) | None = Field(None, examples=["operator:a@example.com"])
    action: text(64) | None = Field(None, examples=["refund.create"])
    target: text(validation.MAX_ID_LEN) | None = None
