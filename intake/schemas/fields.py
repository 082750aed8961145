"""Constrained field types shared by the request and response models.

Every string the API reads refuses NUL (Postgres cannot store it), and every
bound comes from the domain's own constants, so the spec and the checks
behind it cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints, TypeAdapter, WithJsonSchema
from pydantic_core import PydanticCustomError

from shared.domain import cards, validation
from shared.domain.intent import CAPTURE_METHODS, PRIORITIES, Status
from shared.money import CURRENCIES

NO_NUL = r"^[^\x00]*$"


def text(max_length: int | None = None, min_length: int | None = None):
    """A string without NUL, of at most ``max_length`` characters."""
    return Annotated[
        str, StringConstraints(pattern=NO_NUL, max_length=max_length, min_length=min_length)
    ]


def _any_case(code: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in code)


Currency = Annotated[
    str,
    Field(
        pattern="^(?:" + "|".join(_any_case(c) for c in CURRENCIES) + ")$",
        description=f"One of {', '.join(CURRENCIES)}, in any letter case.",
        examples=["USD"],
    ),
]
CurrencyCode = Literal[tuple(CURRENCIES)]  # type: ignore[valid-type]
Amount = Annotated[
    int,
    Field(
        ge=1,
        description="In the currency's minor unit; at most the currency's maximum (else 400).",
    ),
]
CaptureMethod = Literal[CAPTURE_METHODS]  # type: ignore[valid-type]
Priority = Literal[PRIORITIES]  # type: ignore[valid-type]
IntentStatus = Literal[tuple(s.value for s in Status)]  # type: ignore[valid-type]

MetadataKey = text(validation.MAX_METADATA_KEY_LEN, 1)
MetadataValue = text(validation.MAX_METADATA_VALUE_LEN)
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(max_length=validation.MAX_METADATA_KEYS),
    # pydantic would state the key pattern as patternProperties, which lets other keys by.
    WithJsonSchema(
        {
            "type": "object",
            "description": "Free-form string pairs (Stripe's limits: 50 keys, 40 and 500 chars).",
            "maxProperties": validation.MAX_METADATA_KEYS,
            "propertyNames": {
                "minLength": 1,
                "maxLength": validation.MAX_METADATA_KEY_LEN,
                "pattern": NO_NUL,
            },
            "additionalProperties": {
                "type": "string",
                "maxLength": validation.MAX_METADATA_VALUE_LEN,
                "pattern": NO_NUL,
            },
        }
    ),
]

# 12 to 19 ASCII digits, spaces and dashes anywhere (a Luhn failure is a 400 `invalid_number`).
CardNumber = Annotated[
    str,
    Field(
        pattern=rf"^[ -]*(?:[0-9][ -]*){{{cards.PAN_MIN_LEN},{cards.PAN_MAX_LEN}}}$",
        # Not a registered format: a name for what the pattern cannot say (tools may
        # generate such numbers; validators ignore formats they do not know).
        json_schema_extra={"format": "card-number"},
        description="Luhn-valid (else 400); spaces and dashes are ignored.",
        examples=["4242424242424242"],
    ),
]
Cvc = Annotated[
    str,
    Field(pattern="^[0-9]{3,4}$", description="4 digits for amex, else 3 (else 400)."),
]

# Printable ASCII, no surrounding spaces (HTTP strips them), 1 to 255 characters.
IdempotencyKey = Annotated[
    str,
    Field(
        pattern=r"^[!-~](?:[ -~]{0,253}[!-~])?$",
        description="Printable ASCII, 1 to 255 characters; kept at least 24 hours.",
    ),
]
IDEMPOTENCY_KEY = TypeAdapter(IdempotencyKey)
ObjectId = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1)]

_DIGITS = re.compile(r"[0-9]{1,3}")


def _query_int(value: object) -> object:
    # Query strings carry text: only plain ASCII digits are an integer here.
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise PydanticCustomError("int_parsing", "must be an integer")
        return int(value)
    return value


QueryInt = BeforeValidator(_query_int)
