"""Card number and expiry rules. Pure functions: no I/O, no clock (``today`` is passed in)."""

from __future__ import annotations

from datetime import date

_DIGITS = frozenset("0123456789")
_SEPARATORS = frozenset(" -")
PAN_MIN_LEN = 12
PAN_MAX_LEN = 19
# An expiry this far ahead is a typo, not a card.
MAX_YEARS_AHEAD = 50

# (brand, inclusive prefix ranges). Checked in order; each range compares the
# PAN's leading digits, as many as the range bounds have.
_BRANDS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("amex", (("34", "34"), ("37", "37"))),
    ("visa", (("4", "4"),)),
    ("mastercard", (("51", "55"), ("2221", "2720"))),
    ("discover", (("6011", "6011"), ("644", "649"), ("65", "65"))),
    ("unionpay", (("62", "62"), ("81", "81"))),
    ("jcb", (("3528", "3589"),)),
    ("diners", (("300", "305"), ("309", "309"), ("36", "36"), ("38", "39"))),
)


def _all_digits(text: str) -> bool:
    # str.isdigit() also accepts other scripts' digits ("٣"); only ASCII counts.
    return bool(text) and set(text) <= _DIGITS


def luhn_valid(number: str) -> bool:
    """True if ``number`` (ASCII digits only) passes the Luhn checksum."""
    if not isinstance(number, str) or len(number) < 2 or not _all_digits(number):
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def normalize_pan(raw: object) -> str:
    """Strip spaces and dashes; raise ValueError unless 12-19 ASCII digits remain."""
    if not isinstance(raw, str):
        raise ValueError("card number must be a string")
    if not set(raw) <= _DIGITS | _SEPARATORS:
        raise ValueError("card number may contain only digits, spaces and dashes")
    pan = "".join(ch for ch in raw if ch in _DIGITS)
    if not PAN_MIN_LEN <= len(pan) <= PAN_MAX_LEN:
        raise ValueError(f"card number must have {PAN_MIN_LEN} to {PAN_MAX_LEN} digits")
    return pan


def card_brand(pan: str) -> str:
    """Card network from the PAN's leading digits, or ``"unknown"``."""
    if not isinstance(pan, str) or not _all_digits(pan):
        return "unknown"
    for brand, ranges in _BRANDS:
        for low, high in ranges:
            head = pan[: len(low)]
            if len(head) == len(low) and low <= head <= high:
                return brand
    return "unknown"


def last4(pan: str) -> str:
    """The last four digits, the only part of a PAN that may be shown or returned."""
    if not isinstance(pan, str) or len(pan) < 4 or not _all_digits(pan):
        raise ValueError("card number too short for last4")
    return pan[-4:]


def expiry_valid(month: int, year: int, today: date) -> bool:
    """True if the card is valid on ``today`` (through the last day of its expiry month)."""
    # bool is an int subclass; True is not a month.
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (month, year)):
        return False
    if not 1 <= month <= 12:
        return False
    # Four-digit years only: "26" might mean 2026 or 1926, so ask the caller.
    if not 1000 <= year <= today.year + MAX_YEARS_AHEAD:
        return False
    return (year, month) >= (today.year, today.month)


def cvc_valid(cvc: str, brand: str) -> bool:
    """True if ``cvc`` is 3 ASCII digits (4 for amex)."""
    if not isinstance(cvc, str) or not _all_digits(cvc):
        return False
    return len(cvc) == (4 if brand == "amex" else 3)
