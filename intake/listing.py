"""Cursor-paginated list endpoints: one query validator, one list object."""

from __future__ import annotations

from shared.domain.validation import ValidationError

MAX_LIMIT = 100


def list_query(params: dict, filters: dict) -> dict:
    """Validate limit, starting_after and the given filters ({name: allowed values or None})."""
    known = {"limit", "starting_after", *filters}
    for name, value in params.items():
        if name not in known:
            raise ValidationError(name, f"Received unknown parameter: {name}", "parameter_unknown")
        if not isinstance(value, str):
            raise ValidationError(name, f"`{name}` may be given only once.")
    raw_limit = params.get("limit", "10")
    digits = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3
    if not (digits and 1 <= int(raw_limit) <= MAX_LIMIT):
        raise ValidationError("limit", f"`limit` must be an integer from 1 to {MAX_LIMIT}.")
    out = {"limit": int(raw_limit), "starting_after": params.get("starting_after") or None}
    for name, allowed in filters.items():
        # An empty free-text filter is no filter; an empty choice is not a choice.
        value = params.get(name) if allowed is not None else params.get(name) or None
        if value is not None and allowed is not None and value not in allowed:
            raise ValidationError(name, f"`{name}` must be one of: {', '.join(allowed)}.")
        out[name] = value
    return out


def list_object(data: list, has_more: bool, url: str) -> dict:
    """Stripe's list envelope."""
    return {"object": "list", "data": data, "has_more": has_more, "url": url}
