"""The acquirer interface: what the authorization stage needs from a card network connector.

Connectors must be idempotent by ``intent_id``: on redelivery the pipeline may
authorize the same intent twice, and the second call must not create a second
authorization (a real acquirer gets the intent id as its idempotency key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

APPROVED = "approved"
DECLINED = "declined"
TRANSIENT_ERROR = "transient_error"  # retry later; after the last attempt the intent fails
OUTCOMES = frozenset({APPROVED, DECLINED, TRANSIENT_ERROR})

# Failure codes an acquirer may return (a subset of the intent's failure codes).
CARD_DECLINED = "card_declined"
INSUFFICIENT_FUNDS = "insufficient_funds"
EXPIRED_CARD = "expired_card"
PROCESSING_ERROR = "processing_error"


@dataclass(frozen=True)
class AuthRequest:
    intent_id: str
    amount: int  # minor units
    currency: str
    # repr=False: a request that ends up in a log line or traceback must not leak the PAN.
    pan: str = field(repr=False)
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class AuthResult:
    outcome: str  # APPROVED | DECLINED | TRANSIENT_ERROR
    code: str | None = None  # failure code when not approved
    message: str | None = None  # human-readable failure message
    reference: str | None = None  # acquirer's authorization reference when approved

    @property
    def approved(self) -> bool:
        """True when the authorization succeeded."""
        return self.outcome == APPROVED

    @property
    def transient(self) -> bool:
        """True when the caller should retry."""
        return self.outcome == TRANSIENT_ERROR


class Acquirer(Protocol):
    def authorize(self, req: AuthRequest) -> AuthResult:
        """Authorize (hold) the amount on the card; idempotent by ``req.intent_id``."""
        ...
