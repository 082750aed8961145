"""Webhook endpoints as pure rules: what a create or update may say, which events each receives.

An endpoint subscribes to event types (``enabled_events``) or to every type
(``["*"]``, Stripe's wildcard). The URL's shape is checked here; whether
webhooks may go there (the SSRF policy) needs a resolver and is the service's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.domain.merchant_admin import MAX_URL_LEN
from shared.domain.validation import (
    MAX_DESCRIPTION_LEN,
    ValidationError,
    metadata_param,
    reject_unknown,
    require_object,
)

WILDCARD = "*"
STATUSES = ("enabled", "disabled")
CREATE_FIELDS = {"url", "enabled_events", "description", "metadata", "disabled"}
UPDATE_FIELDS = CREATE_FIELDS
# More entries than there are types (and the wildcard) can only repeat some.
MAX_ENABLED_EVENTS = 64


@dataclass(frozen=True)
class EndpointChange:
    """A create (every field set) or an update (None: leave it as it is)."""

    url: str | None = None
    enabled_events: tuple[str, ...] | None = None
    # "" on an update clears the description.
    description: str | None = None
    metadata: dict | None = None
    disabled: bool | None = None


def validate_create(body: object, event_types: Iterable[str]) -> EndpointChange:
    """A create request: ``url`` and ``enabled_events`` required, the rest optional."""
    body = require_object(body)
    reject_unknown(body, CREATE_FIELDS)
    for name in ("url", "enabled_events"):
        if body.get(name) is None:
            raise ValidationError(name, f"Missing required param: {name}.", "parameter_missing")
    change = _fields(body, event_types)
    return EndpointChange(
        url=change.url,
        enabled_events=change.enabled_events,
        description=change.description or None,
        metadata=change.metadata or {},
        disabled=bool(change.disabled),
    )


def validate_update(body: object, event_types: Iterable[str]) -> EndpointChange:
    """An update request: any of the create's fields; those absent stay as they are."""
    body = require_object(body)
    reject_unknown(body, UPDATE_FIELDS)
    return _fields(body, event_types)


def _fields(body: dict, event_types: Iterable[str]) -> EndpointChange:
    events = body.get("enabled_events")
    metadata = body.get("metadata")
    return EndpointChange(
        url=url_param(body.get("url")),
        enabled_events=None if events is None else enabled_events_param(events, event_types),
        description=_description(body.get("description")),
        metadata=None if metadata is None else metadata_param(metadata),
        disabled=_disabled(body.get("disabled")),
    )


def url_param(value: object, param: str = "url") -> str | None:
    """A URL's text (its policy is checked by the service); None when absent."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_URL_LEN:
        raise ValidationError(param, f"`{param}` must be a URL of 1 to {MAX_URL_LEN} characters.")
    return value


def enabled_events_param(value: object, event_types: Iterable[str]) -> tuple[str, ...]:
    """Event types without repeats, in the order given; or the wildcard alone."""
    known = tuple(event_types)
    if not isinstance(value, list) or not value or len(value) > MAX_ENABLED_EVENTS:
        raise ValidationError(
            "enabled_events",
            '`enabled_events` must be a non-empty list of event types, or ["*"].',
        )
    for i, item in enumerate(value):
        if item != WILDCARD and item not in known:
            shown = item if isinstance(item, str) else repr(item)
            raise ValidationError(
                f"enabled_events[{i}]",
                f"Unknown event type {shown!r}; event types are: {', '.join(known)} (or *).",
            )
    if WILDCARD in value and len(set(value)) > 1:
        raise ValidationError(
            "enabled_events", '`enabled_events` is ["*"] (every type) or a list of types, not both.'
        )
    return tuple(dict.fromkeys(value))


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_LEN:
        raise ValidationError(
            "description",
            f"`description` must be a string of at most {MAX_DESCRIPTION_LEN} characters.",
        )
    return value


def _disabled(value: object) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValidationError("disabled", "`disabled` must be true or false.")
    return value


def receives(enabled_events: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``enabled_events`` receives ``event_type``."""
    wanted = set(enabled_events)
    return WILDCARD in wanted or event_type in wanted
