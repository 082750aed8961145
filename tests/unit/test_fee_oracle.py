"""compute_fee against an exact rational restatement of the documented rule.

README, Money: ``fee = min(amount, round_half_up(amount × bps / 10000) + fixed[currency])``,
the percentage rounded half up to the minor unit (x.5 up, x.25 down), a
currency without a fixed fee paying the percentage only. The oracle below
uses ``fractions.Fraction`` (exact, no integer tricks shared with the code)
and is checked over amounts, plans, currencies and priority tiers.
"""

from __future__ import annotations

from fractions import Fraction
from math import floor

from hypothesis import example, given
from hypothesis import strategies as st

from shared.domain.fees import (
    BPS_DENOMINATOR,
    DEFAULT_FEE_PLAN,
    PRIORITIES,
    FeePlan,
    compute_fee,
    plan_from_json,
)
from shared.money import CURRENCIES

HALF = Fraction(1, 2)


def oracle(amount: int, currency: str, priority: str, bps: dict, fixed: dict) -> int:
    share = Fraction(amount) * Fraction(bps[priority], 10_000)
    percentage = floor(share + HALF)  # half up: the least integer n with n >= share - 1/2
    return min(amount, percentage + fixed.get(currency, 0))


currencies = st.sampled_from(sorted(CURRENCIES))
priorities = st.sampled_from(PRIORITIES)
bps_values = st.integers(0, BPS_DENOMINATOR)
# Up to each currency's per-intent maximum and a little past it (the function
# itself does not bound amounts), small amounts where the fixed fee caps.
amounts = st.one_of(
    st.integers(0, 100),
    st.integers(0, 10**6),
    st.integers(0, 10**24),
)
fixed_values = st.one_of(st.integers(0, 100), st.integers(0, 10**20))
plans = st.fixed_dictionaries(
    {
        "bps": st.fixed_dictionaries({p: bps_values for p in PRIORITIES}),
        # Some currencies without a fixed fee: they pay the percentage only.
        "fixed": st.dictionaries(currencies, fixed_values),
    }
)


@given(amounts, currencies, priorities, plans)
@example(
    1020,
    "USD",
    "standard",
    {"bps": {"instant": 290, "standard": 250, "economy": 200}, "fixed": {"USD": 30}},
)  # README: 25.5 -> 26, + 30 = 56
@example(
    50, "USD", "standard", {"bps": {"instant": 0, "standard": 250, "economy": 0}, "fixed": {}}
)  # 1.25 -> 1
@example(
    10,
    "USD",
    "instant",
    {"bps": {"instant": 290, "standard": 0, "economy": 0}, "fixed": {"USD": 30}},
)  # capped at the amount
def test_fee_is_the_exact_rational_rule(amount, currency, priority, plan):
    fee = compute_fee(amount, currency, priority, FeePlan(plan["bps"], plan["fixed"]))
    assert fee == oracle(amount, currency, priority, plan["bps"], plan["fixed"])
    assert 0 <= fee <= amount


@given(amounts, currencies, priorities)
def test_default_plan_is_the_exact_rational_rule(amount, currency, priority):
    bps, fixed = dict(DEFAULT_FEE_PLAN.bps), dict(DEFAULT_FEE_PLAN.fixed)
    fee = compute_fee(amount, currency, priority, DEFAULT_FEE_PLAN)
    assert fee == oracle(amount, currency, priority, bps, fixed)
    assert fee <= amount


# Divisors of 5000 (and of 2500): for them an exact .5 (or .25/.75) is reachable.
TIE_BPS = [b for b in range(1, BPS_DENOMINATOR + 1) if 5000 % b == 0]


@given(st.sampled_from(TIE_BPS), st.integers(0, 10**15), priorities)
def test_exact_halves_round_up(bps, q, priority):
    # amount × bps / 10000 = q + 1/2 exactly
    amount = (BPS_DENOMINATOR * q + 5000) // bps
    plan = FeePlan(bps={p: bps for p in PRIORITIES}, fixed={})
    assert Fraction(amount * bps, BPS_DENOMINATOR) == q + HALF
    assert compute_fee(amount, "USD", priority, plan) == min(amount, q + 1)


@given(st.sampled_from([b for b in TIE_BPS if 2500 % b == 0]), st.integers(0, 10**15))
def test_quarters_round_to_nearest(bps, q):
    plan = FeePlan(bps={p: bps for p in PRIORITIES}, fixed={})
    quarter = (BPS_DENOMINATOR * q + 2500) // bps  # q + 1/4 -> q
    three_quarters = (BPS_DENOMINATOR * q + 7500) // bps  # q + 3/4 -> q + 1
    assert compute_fee(quarter, "EUR", "standard", plan) == min(quarter, q)
    assert compute_fee(three_quarters, "EUR", "standard", plan) == min(three_quarters, q + 1)


@given(amounts, currencies, priorities, plans)
def test_plans_from_json_agree_with_the_oracle(amount, currency, priority, plan):
    """A stored plan (merged over the default) gives the oracle's fee on the merged plan."""
    built = plan_from_json(plan)
    bps = {**DEFAULT_FEE_PLAN.bps, **plan["bps"]}
    fixed = {**DEFAULT_FEE_PLAN.fixed, **plan["fixed"]}
    assert compute_fee(amount, currency, priority, built) == oracle(
        amount, currency, priority, bps, fixed
    )


@given(amounts, currencies)
def test_priority_tiers_order_the_default_fees(amount, currency):
    instant, standard, economy = (
        compute_fee(amount, currency, p, DEFAULT_FEE_PLAN) for p in PRIORITIES
    )
    assert instant >= standard >= economy
