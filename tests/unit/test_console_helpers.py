"""The console's pure helpers: amounts and times as pages show them, CSRF token checks."""

from __future__ import annotations

from datetime import UTC, date, datetime

from intake.console import csrf, forms
from intake.console.render import money, timestamp


def test_money_is_shown_in_major_units_with_the_currency():
    assert money(1234, "USD") == "12.34 USD"
    assert money(5, "usd") == "0.05 USD"
    assert money(-250, "EUR") == "-2.50 EUR"
    assert money(1500, "JPY") == "1500 JPY"
    assert money(1, "BTC") == "0.00000001 BTC"
    assert money(7, "XXX") == "7 XXX"  # unknown: as stored
    assert money(None, "USD") == "–"


def test_timestamps_are_utc():
    assert timestamp(0) == "1970-01-01 00:00:00"
    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02 03:04:05"
    assert timestamp(None) == timestamp("") == "–"


def test_a_day_range_covers_the_whole_days():
    day = date(2026, 3, 1)
    assert forms.day_start(day) == int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    assert forms.day_end(day) == forms.day_start(day) + 86399
    assert forms.day_start(None) is None and forms.day_end(None) is None


def test_csrf_tokens_are_bound_to_the_session_and_compared_strictly():
    mac = lambda text: f"mac({text})"  # noqa: E731
    one = csrf.for_session(mac, {"sub": "op_1", "auth_time": 10})
    assert one == csrf.for_session(mac, {"sub": "op_1", "auth_time": 10, "jti": "renewed"})
    assert one != csrf.for_session(mac, {"sub": "op_1", "auth_time": 11})  # another login
    assert one != csrf.for_session(mac, {"sub": "op_2", "auth_time": 10})
    assert csrf.for_nonce(mac, "n") != csrf.for_session(mac, {"sub": "n", "auth_time": 0})
    assert csrf.matches(one, one)
    for sent in (None, "", one[:-1], ["x"], 3):
        assert not csrf.matches(sent, one)
    assert not csrf.matches("", "")
