"""What the operator API's searches and blocklist accept: pure checks, one message each.

The API and the web console hand these the raw text a person typed, so each
refusal names the parameter (``ValidationError.param``) and changes nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from shared.domain.fraud import BLOCKLIST_KINDS
from shared.domain.intent import Status
from shared.domain.validation import MAX_ID_LEN, ValidationError

STATUSES = tuple(s.value for s in Status)
# What shared.security.vault.Vault.fingerprint gives (payment_method.card.fingerprint).
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")
_UNIX = re.compile(r"[0-9]{1,11}")


def status(value: str | None) -> str | None:
    """An intent status filter (None or empty: no filter)."""
    if not value:
        return None
    if value not in STATUSES:
        raise ValidationError("status", f"`status` must be one of: {', '.join(STATUSES)}.")
    return value


def last4(value: str | None) -> str | None:
    """The last four digits of a card number (None or empty: no filter)."""
    if not value:
        return None
    if not (len(value) == 4 and value.isascii() and value.isdigit()):
        raise ValidationError("last4", "`last4` must be exactly four digits.")
    return value


def instant(value: str | int | datetime | None, param: str) -> datetime | None:
    """Unix seconds or ISO 8601 (a date alone is its midnight UTC; no zone is UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValidationError(param, f"`{param}` must be unix seconds or an ISO 8601 time.")
    if _UNIX.fullmatch(value):
        return datetime.fromtimestamp(int(value), UTC)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            param, f"`{param}` must be unix seconds or an ISO 8601 time, got {value!r}."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def block_kind(value: str | None, *, required: bool = True) -> str | None:
    """One of the blocklist's kinds (what the fraud stage matches)."""
    if not value:
        if required:
            raise ValidationError("kind", "Missing required param: kind.", "parameter_missing")
        return None
    if value not in BLOCKLIST_KINDS:
        raise ValidationError("kind", f"`kind` must be one of: {', '.join(BLOCKLIST_KINDS)}.")
    return value


def block_value(kind: str, value: str | None) -> str:
    """The value to match: a card fingerprint (never a number), a wallet id, an IP, a customer."""
    if not value:
        raise ValidationError("value", "Missing required param: value.", "parameter_missing")
    if len(value) > MAX_ID_LEN or "\x00" in value:
        raise ValidationError("value", f"`value` must be at most {MAX_ID_LEN} characters.")
    if kind == "card_fingerprint" and not _FINGERPRINT.fullmatch(value):
        raise ValidationError(
            "value",
            "A card is blocked by its fingerprint (32 hex digits,"
            " payment_method.card.fingerprint), never by its number.",
        )
    return value
