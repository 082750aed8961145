"""Scopes: parsing, granting a subset, the legacy alias; certificate fingerprints."""

import pytest

from shared.domain import scopes as S
from shared.domain.cert_binding import normalize_sha256

READ = ("payment_intents:read", "refunds:read")


def test_every_scope_in_its_order():
    # customers:write is issue 15's; migration 0018 spells the list out in this order.
    assert S.ALL_SCOPES == (
        "payment_intents:read",
        "payment_intents:write",
        "refunds:read",
        "refunds:write",
        "events:read",
        "events:write",
        "webhook_endpoints:read",
        "webhook_endpoints:write",
        "balance:read",
        "reports:read",
        "customers:write",
    )


@pytest.mark.parametrize(
    ("text", "separator", "expected"),
    [
        ("refunds:read payment_intents:read", None, READ),  # canonical order
        ("refunds:read  refunds:read\tpayment_intents:read", None, READ),  # duplicates, tabs
        ("refunds:read,payment_intents:read", ",", READ),
        (" refunds:read , payment_intents:read ,", ",", READ),  # the CLI's list, forgiving
        ("payments", None, S.ALL_SCOPES),  # the deprecated alias
        ("payments refunds:read", None, S.ALL_SCOPES),
    ],
)
def test_parse(text, separator, expected):
    assert S.parse(text, separator) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("refunds:delete", "unknown scope 'refunds:delete'"),
        ("Refunds:read", "unknown scope 'Refunds:read'"),  # scopes are case-sensitive
        ("refunds:read,balance:read", "unknown scope 'refunds:read,balance:read'"),  # not ","
        ("", "no scope given"),
        ("   ", "no scope given"),
        (None, "no scope given"),
    ],
)
def test_parse_refuses(text, says):
    with pytest.raises(S.ScopeError, match=says):
        S.parse(text)


def test_grant_gives_the_clients_scopes_or_the_asked_subset():
    assert S.grant(READ, None) == READ
    assert S.grant(READ, "") == READ
    assert S.grant(reversed(READ), "refunds:read") == ("refunds:read",)
    # The legacy alias asks for what the client has, never more.
    assert S.grant(READ, "payments") == READ
    assert S.grant(S.ALL_SCOPES, "payments") == S.ALL_SCOPES


@pytest.mark.parametrize(
    ("asked", "says"),
    [
        ("refunds:write", "may not ask for the 'refunds:write' scope"),
        ("refunds:read balance:read", "may not ask for the 'balance:read' scope"),
        ("payments nonsense", "unknown scope 'nonsense'"),
    ],
)
def test_grant_refuses_what_the_client_lacks(asked, says):
    with pytest.raises(S.ScopeError, match=says):
        S.grant(READ, asked)


def test_claim_scopes_and_text():
    assert S.claim_scopes("refunds:read balance:read") == {"refunds:read", "balance:read"}
    # An access token signed before scopes existed (alive for at most 15 min).
    assert S.claim_scopes("payments") == set(S.ALL_SCOPES)
    assert S.claim_scopes(None) == frozenset()
    assert S.text(["refunds:read", "payment_intents:read"]) == "payment_intents:read refunds:read"


def test_normalize_sha256():
    hex64 = "ab" * 32
    assert normalize_sha256(hex64.upper()) == hex64
    assert normalize_sha256(":".join(["AB"] * 32)) == hex64
    assert normalize_sha256(f" {hex64}\n") == hex64
    for bad in ("ab" * 31, "ab" * 33, "zz" * 32, "", "ab" * 31 + "a"):
        with pytest.raises(ValueError, match="64 hex digits"):
            normalize_sha256(bad)
