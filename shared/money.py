"""Currencies and amounts. Amounts are always ``int`` in the minor unit.

No floats anywhere near money: a ``float`` amount is rejected at the edge,
and every conversion here is integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Currency:
    code: str
    exponent: int  # digits after the decimal point: USD 2, JPY 0, ETH 18
    max_major: int  # largest single amount accepted, in major units

    @property
    def unit(self) -> int:
        return 10**self.exponent

    @property
    def max_minor(self) -> int:
        return self.max_major * self.unit

    def minor(self, major: int) -> int:
        """Whole major units to minor units."""
        return major * self.unit


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("USD", 2, 999_999),
        Currency("EUR", 2, 999_999),
        Currency("GBP", 2, 999_999),
        Currency("JPY", 0, 99_999_999),
        Currency("BTC", 8, 1_000),
        Currency("ETH", 18, 10_000),
        Currency("USDC", 6, 999_999),
        Currency("EURC", 6, 999_999),
    )
}


def currency(code: str) -> Currency:
    """Look a currency up by its upper-case code; KeyError if unknown."""
    return CURRENCIES[code]


def is_amount(value: object) -> bool:
    """True for a real integer (``bool`` and ``float`` are not amounts)."""
    return isinstance(value, int) and not isinstance(value, bool)


def div_round_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounding halves away from zero (for non-negative values)."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("div_round_half_up takes a non-negative numerator")
    q, r = divmod(numerator, denominator)
    return q + 1 if 2 * r >= denominator else q
