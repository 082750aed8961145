"""The operator search's and blocklist's checks: what they accept, what they refuse (and name)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.domain import operator_filters as filters
from shared.domain.validation import ValidationError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
        ("1767225600", datetime(2026, 1, 1, tzinfo=UTC)),
        (1767225600, datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),  # a date: its midnight UTC
        ("2026-01-01T10:30:00", datetime(2026, 1, 1, 10, 30, tzinfo=UTC)),  # no zone: UTC
        ("2026-01-01T12:00:00+02:00", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        (None, None),
        ("", None),
    ],
)
def test_instants_are_unix_seconds_or_iso_8601(text, expected):
    assert filters.instant(text, "created_gte") == expected


def test_an_aware_datetime_is_kept():
    moment = datetime(2026, 3, 1, 9, tzinfo=timezone(timedelta(hours=-5)))
    assert filters.instant(moment, "created_lte") == moment


@pytest.mark.parametrize("text", ["yesterday", "2026-02-30", "2026-13-01", "-5", "1.5", True])
def test_anything_else_is_refused_naming_the_param(text):
    with pytest.raises(ValidationError) as refused:
        filters.instant(text, "created_lte")
    assert refused.value.param == "created_lte"


@pytest.mark.parametrize("text", ["123", "12345", "12a4", "١٢٣٤"])
def test_last4_is_four_ascii_digits(text):
    assert filters.last4("4242") == "4242" and filters.last4("") is None
    with pytest.raises(ValidationError) as refused:
        filters.last4(text)
    assert refused.value.param == "last4"


def test_status_is_an_intent_status():
    assert filters.status("succeeded") == "succeeded" and filters.status(None) is None
    with pytest.raises(ValidationError) as refused:
        filters.status("paid")
    assert refused.value.param == "status"


def test_a_card_is_blocked_by_its_fingerprint_never_its_number():
    fingerprint = "0123456789abcdef" * 2
    assert filters.block_value("card_fingerprint", fingerprint) == fingerprint
    for value in ("4242424242424242", fingerprint.upper(), fingerprint + "0"):
        with pytest.raises(ValidationError) as refused:
            filters.block_value("card_fingerprint", value)
        assert refused.value.param == "value"
    assert filters.block_value("ip", "2001:db8::1") == "2001:db8::1"


@pytest.mark.parametrize(
    ("kind", "value"), [("phone", "1"), ("", "1"), ("ip", ""), ("ip", "a\x00")]
)
def test_a_blocklist_entry_needs_a_known_kind_and_a_value(kind, value):
    with pytest.raises(ValidationError) as refused:
        filters.block_value(filters.block_kind(kind), value)
    assert refused.value.param in ("kind", "value")
    assert filters.block_kind("", required=False) is None
