"""Card number, brand, expiry and CVC rules."""

from datetime import date

import pytest

from shared.domain.cards import (
    card_brand,
    cvc_valid,
    expiry_valid,
    last4,
    luhn_valid,
    normalize_pan,
)

# Stripe's public test numbers (DESIGN §3) plus one per brand.
VALID = [
    "4242424242424242",
    "4000000000000002",
    "4000000000009995",
    "4000000000000069",
    "4000000000000119",
    "4100000000000019",
    "5555555555554444",
    "2223003122003222",
    "378282246310005",
    "6011111111111117",
    "3056930009020004",
    "36227206271667",
    "3566002020360505",
    "6200000000000005",
]


@pytest.mark.parametrize("pan", VALID)
def test_luhn_accepts_test_numbers(pan):
    assert luhn_valid(pan)


@pytest.mark.parametrize(
    "pan", ["4242424242424241", "1234567812345678", "", "0", "4242 4242", "٤٢"]
)
def test_luhn_rejects(pan):
    assert not luhn_valid(pan)


def test_normalize_pan_strips_spaces_and_dashes():
    assert normalize_pan("4242 4242-4242 4242") == "4242424242424242"


@pytest.mark.parametrize(
    "raw", ["4242.4242.4242.4242", "4242424242424242x", "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "4242", "4" * 20, ""]
)
def test_normalize_pan_rejects(raw):
    with pytest.raises(ValueError):
        normalize_pan(raw)


def test_normalize_pan_rejects_non_strings():
    with pytest.raises(ValueError):
        normalize_pan(4242424242424242)


@pytest.mark.parametrize(
    ("pan", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("2720990000000007", "mastercard"),
        ("2721000000000000", "unknown"),
        ("378282246310005", "amex"),
        ("341111111111111", "amex"),
        ("6011111111111117", "discover"),
        ("6445644564456445", "discover"),
        ("6500000000000002", "discover"),
        ("3566002020360505", "jcb"),
        ("3056930009020004", "diners"),
        ("36227206271667", "diners"),
        ("6200000000000005", "unionpay"),
        ("9999999999999995", "unknown"),
        ("", "unknown"),
    ],
)
def test_card_brand(pan, brand):
    assert card_brand(pan) == brand


def test_last4():
    assert last4("4242424242424242") == "4242"
    with pytest.raises(ValueError):
        last4("42")


TODAY = date(2025, 6, 15)


@pytest.mark.parametrize(
    ("month", "year", "ok"),
    [
        (6, 2025, True),  # valid through the end of the expiry month
        (5, 2025, False),
        (12, 2024, False),
        (1, 2026, True),
        (12, 2030, True),
        (0, 2030, False),
        (13, 2030, False),
        (6, 25, False),  # two-digit year refused
        (6, 30, False),
        (6, 2200, False),
        (True, 2030, False),
    ],
)
def test_expiry_valid(month, year, ok):
    assert expiry_valid(month, year, TODAY) is ok


def test_expiry_last_day_of_month():
    assert expiry_valid(2, 2024, date(2024, 2, 29))
    assert not expiry_valid(2, 2024, date(2024, 3, 1))


@pytest.mark.parametrize(
    ("cvc", "brand", "ok"),
    [
        ("123", "visa", True),
        ("1234", "visa", False),
        ("1234", "amex", True),
        ("123", "amex", False),
        ("12a", "visa", False),
        ("١٢٣", "visa", False),
        ("", "visa", False),
        (123, "visa", False),
    ],
)
def test_cvc_valid(cvc, brand, ok):
    assert cvc_valid(cvc, brand) is ok
