"""Merchant administration's pure rules: what an operator may send, what the audit trail shows.

The checks word their refusals as the CLI's arguments do, so a bad value
reads the same from ``clearhouse merchant ...`` and ``/v1/operator/merchants``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from shared.domain.validation import ValidationError

MAX_REASON_LEN = 500
MAX_NAME_LEN = 200
MAX_URL_LEN = 2048
THRESHOLD_RANGE = (0, 100)
# How long a rotated-out webhook secret may go on signing: 30 days.
MAX_OVERLAP_HOURS = 720
LIMIT_FIELDS = ("per_transaction", "daily", "monthly")


def redact_url(url: str | None) -> str | None:
    """``url`` without what may be a credential: its password and query (and fragment).

    Webhook URLs sometimes carry a token (``https://user:pw@host/hook?key=...``);
    the audit trail and the operator views show where webhooks go, not how
    they authenticate.
    """
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None:
        netloc = f"{parts.username}:***@{netloc}" if parts.password else f"***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def threshold(value: object, param: str = "threshold") -> int:
    """A fraud block threshold: an integer risk score from 0 to 100."""
    low, high = THRESHOLD_RANGE
    if value is None:
        raise ValidationError(param, f"Missing required param: {param}.", "parameter_missing")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(
            param, f"`{param}` must be an integer from {low} to {high}, got {value!r}."
        )
    return value


def positive_limit(value: object, param: str) -> int | None:
    """A limit in minor units: a positive integer, or None (the default applies)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError(
            param, f"`{param}` must be a positive integer (minor units), got {value!r}."
        )
    return value


def reason(value: object, param: str = "reason") -> str | None:
    """A suspension's reason: free text up to MAX_REASON_LEN characters; blank is none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(param, f"`{param}` must be a string.")
    if len(value) > MAX_REASON_LEN:
        raise ValidationError(param, f"`{param}` must be at most {MAX_REASON_LEN} characters.")
    return value.strip() or None


def overlap_hours(value: object, param: str = "overlap_hours") -> float | None:
    """How long a rotated secret keeps working: 0 to MAX_OVERLAP_HOURS hours (None: default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValidationError(
            param, f"`{param}` must be a non-negative number of hours, got {value!r}."
        )
    if value > MAX_OVERLAP_HOURS:
        raise ValidationError(param, f"`{param}` must be at most {MAX_OVERLAP_HOURS} hours.")
    return float(value)
