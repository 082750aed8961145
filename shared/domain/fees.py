"""Fee plans and fee calculation: basis points per priority plus a fixed fee per currency.

Pure integer arithmetic on minor units; the rounding rule is in ``compute_fee``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from shared.money import CURRENCIES, div_round_half_up, is_amount

PRIORITIES: tuple[str, ...] = ("instant", "standard", "economy")
BPS_DENOMINATOR = 10_000  # basis points per whole (100 %)


@dataclass(frozen=True)
class FeePlan:
    bps: Mapping[str, int]  # priority -> basis points of the amount
    fixed: Mapping[str, int]  # currency code -> fixed fee in that currency's minor unit


def _frozen(d: Mapping[str, int]) -> Mapping[str, int]:
    # Read-only views so a shared plan (the default above all) cannot be mutated by a caller.
    return MappingProxyType(dict(d))


DEFAULT_FEE_PLAN = FeePlan(
    bps=_frozen({"instant": 290, "standard": 250, "economy": 200}),
    fixed=_frozen(
        {
            "USD": 30,  # 0.30
            "EUR": 25,  # 0.25
            "GBP": 20,  # 0.20
            "JPY": 30,  # JPY has no minor unit: 30 yen
            "BTC": 0,
            "ETH": 0,
            "USDC": 300_000,  # 0.30 at 6 decimals
            "EURC": 250_000,  # 0.25 at 6 decimals
        }
    ),
)


def _validated(section: str, raw: object, allowed: Mapping[str, object] | tuple[str, ...]) -> dict:
    if not isinstance(raw, Mapping):
        raise ValueError(f"fee plan {section!r} must be an object")
    out: dict[str, int] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise ValueError(f"fee plan {section!r} has unknown key {key!r}")
        if not is_amount(value) or value < 0:
            raise ValueError(f"fee plan {section}.{key} must be an integer >= 0, got {value!r}")
        # A percentage above 100 % would be capped anyway; reject it as a configuration mistake.
        if section == "bps" and value > BPS_DENOMINATOR:
            raise ValueError(f"fee plan bps.{key} must be at most {BPS_DENOMINATOR}")
        out[key] = value
    return out


def plan_from_json(data: dict | None) -> FeePlan:
    """Build a fee plan from stored JSON; missing entries fall back to the default plan."""
    if data is None:
        return DEFAULT_FEE_PLAN
    if not isinstance(data, Mapping):
        raise ValueError("fee plan must be an object")
    unknown = set(data) - {"bps", "fixed"}
    if unknown:
        raise ValueError(f"fee plan has unknown keys: {', '.join(sorted(unknown))}")
    bps = {**DEFAULT_FEE_PLAN.bps, **_validated("bps", data.get("bps", {}), PRIORITIES)}
    fixed = {**DEFAULT_FEE_PLAN.fixed, **_validated("fixed", data.get("fixed", {}), CURRENCIES)}
    return FeePlan(bps=_frozen(bps), fixed=_frozen(fixed))


def plan_to_json(plan: FeePlan) -> dict:
    """Serialize a fee plan to plain JSON-ready dicts."""
    return {"bps": dict(plan.bps), "fixed": dict(plan.fixed)}


def compute_fee(amount: int, currency: str, priority: str, plan: FeePlan) -> int:
    """Fee = round_half_up(amount * bps / 10000) + fixed[currency], capped at amount."""
    # Rounding rule (documented in the README): the percentage part is computed with
    # integer arithmetic and rounded half up to the currency's minor unit (1.5 -> 2,
    # 1.25 -> 1); the fixed fee for the currency (0 if the plan has none) is added;
    # the total never exceeds the amount, so the merchant's net is never negative.
    if not is_amount(amount) or amount < 0:
        raise ValueError(f"amount must be an integer >= 0, got {amount!r}")
    if priority not in plan.bps:
        raise ValueError(f"unknown priority {priority!r}")
    percentage = div_round_half_up(amount * plan.bps[priority], BPS_DENOMINATOR)
    return min(amount, percentage + plan.fixed.get(currency, 0))
