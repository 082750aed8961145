"""API client scopes: what a key may do.

Pure: the token endpoint, the CLI and the Auth middleware all parse and compare
scopes here, so they cannot disagree on what a scope string means.
"""

from __future__ import annotations

from collections.abc import Iterable

# In the order the documents list them; granted sets are kept in this order.
SCOPES = {
    "payment_intents:read": "Retrieve and list payment intents.",
    "payment_intents:write": "Create, capture and cancel payment intents.",
    "refunds:read": "Retrieve and list refunds.",
    "refunds:write": "Create refunds.",
    "events:read": "Retrieve and list events and webhook deliveries.",
    "events:write": "Redeliver an event's webhook.",
    "webhook_endpoints:read": "Retrieve and list webhook endpoints.",
    "webhook_endpoints:write": "Create, update, delete webhook endpoints and rotate their secrets.",
    "balance:read": "Retrieve the balance.",
    "reports:read": "Retrieve daily reports.",
    "customers:write": "Erase a customer's personal data.",
}
ALL_SCOPES: tuple[str, ...] = tuple(SCOPES)
# The single scope of the first version: asked for at the token endpoint it still
# means everything the client may do, so integrations written then keep working.
LEGACY_SCOPE = "payments"


class ScopeError(ValueError):
    """A scope string names a scope that does not exist (or none at all)."""


def canonical(scopes: Iterable[str]) -> tuple[str, ...]:
    """``scopes`` without duplicates, in the documents' order."""
    wanted = set(scopes)
    return tuple(s for s in ALL_SCOPES if s in wanted)


def parse(text: str | None, separator: str | None = None) -> tuple[str, ...]:
    """The scopes of a space-separated (or ``separator``-separated) list; ScopeError if bad.

    ``payments`` stands for every scope. An empty list is an error: a client
    that may do nothing is a mistake, not a key.
    """
    items = [s.strip() for s in (text or "").split(separator)]
    items = [s for s in items if s]
    unknown = [s for s in items if s not in SCOPES and s != LEGACY_SCOPE]
    if unknown:
        raise ScopeError(f"unknown scope {unknown[0]!r}; scopes are: {', '.join(ALL_SCOPES)}")
    if not items:
        raise ScopeError(f"no scope given; scopes are: {', '.join(ALL_SCOPES)}")
    if LEGACY_SCOPE in items:
        return ALL_SCOPES
    return canonical(items)


def grant(allowed: Iterable[str], requested: str | None) -> tuple[str, ...]:
    """What a token gets: ``allowed`` when nothing is asked, else the asked subset of it.

    ``payments`` (the deprecated all-scopes alias) asks for everything the
    client has, never more. Asking for a scope the client lacks is a ScopeError.
    """
    allowed = canonical(allowed)
    if requested is None or not requested.strip():
        return allowed
    wanted = parse(requested)
    if LEGACY_SCOPE in requested.split():
        return allowed
    lacking = [s for s in wanted if s not in allowed]
    if lacking:
        raise ScopeError(f"this client may not ask for the {lacking[0]!r} scope")
    return wanted


def claim_scopes(claim: object) -> frozenset[str]:
    """The scopes an access token's ``scope`` claim grants (legacy tokens: every scope)."""
    items = str(claim or "").split()
    if LEGACY_SCOPE in items:
        return frozenset(ALL_SCOPES)
    return frozenset(items)


def text(scopes: Iterable[str]) -> str:
    """The space-separated form (OAuth's ``scope``, the database column)."""
    return " ".join(canonical(scopes))
