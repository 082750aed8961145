"""Fee calculation: worked examples, the rounding rule, plan JSON and properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.fees import (
    DEFAULT_FEE_PLAN,
    PRIORITIES,
    FeePlan,
    compute_fee,
    plan_from_json,
    plan_to_json,
)
from shared.money import CURRENCIES

P = DEFAULT_FEE_PLAN


@pytest.mark.parametrize(
    ("amount", "currency", "priority", "expected"),
    [
        (10_000, "USD", "instant", 290 + 30),
        (10_000, "USD", "standard", 250 + 30),
        (10_000, "USD", "economy", 200 + 30),
        (10_000, "JPY", "standard", 250 + 30),
        (1, "USD", "instant", 1),  # capped at the amount
        (0, "USD", "instant", 0),
        (10**18, "ETH", "instant", 29 * 10**15),  # 2.9 % of 1 ETH, no fixed fee
        (100_000_000, "USDC", "standard", 2_500_000 + 300_000),
    ],
)
def test_examples(amount, currency, priority, expected):
    assert compute_fee(amount, currency, priority, P) == expected


def test_rounds_half_up():
    plan = FeePlan(bps={"standard": 250}, fixed={})
    assert compute_fee(50, "USD", "standard", plan) == 1  # 1.25 -> 1
    assert compute_fee(60, "USD", "standard", plan) == 2  # 1.5 -> 2
    assert compute_fee(59, "USD", "standard", plan) == 1  # 1.475 -> 1
    assert compute_fee(70, "USD", "standard", plan) == 2  # 1.75 -> 2


def test_currency_without_fixed_fee_pays_percentage_only():
    plan = FeePlan(bps={"standard": 100}, fixed={"USD": 30})
    assert compute_fee(10_000, "EUR", "standard", plan) == 100


@pytest.mark.parametrize("amount", [-1, 1.5, True, "10"])
def test_rejects_bad_amount(amount):
    with pytest.raises(ValueError):
        compute_fee(amount, "USD", "standard", P)


def test_rejects_unknown_priority():
    with pytest.raises(ValueError):
        compute_fee(100, "USD", "urgent", P)


def test_default_plan_covers_every_currency_and_priority():
    assert set(P.fixed) == set(CURRENCIES)
    assert set(P.bps) == set(PRIORITIES)


def test_default_plan_is_read_only():
    with pytest.raises(TypeError):
        P.bps["instant"] = 0  # type: ignore[index]


def test_plan_json_none_is_default():
    assert plan_from_json(None) is DEFAULT_FEE_PLAN


def test_plan_json_partial_overrides_default():
    plan = plan_from_json({"bps": {"instant": 400}, "fixed": {"USD": 0}})
    assert plan.bps["instant"] == 400
    assert plan.bps["standard"] == 250
    assert plan.fixed["USD"] == 0
    assert plan.fixed["EUR"] == 25
    assert DEFAULT_FEE_PLAN.bps["instant"] == 290  # the default is untouched


def test_plan_json_round_trip():
    plan = plan_from_json({"bps": {"economy": 150}})
    assert plan_from_json(plan_to_json(plan)) == plan
    assert plan_to_json(DEFAULT_FEE_PLAN)["fixed"]["USDC"] == 300_000


@pytest.mark.parametrize(
    "data",
    [
        {"bps": {"instant": -1}},
        {"bps": {"instant": 2.5}},
        {"bps": {"instant": "290"}},
        {"bps": {"instant": True}},
        {"bps": {"instant": 10_001}},
        {"bps": {"urgent": 100}},
        {"fixed": {"XYZ": 1}},
        {"fixed": {"USD": -5}},
        {"fixed": [1, 2]},
        {"percent": {}},
        [],
    ],
)
def test_plan_json_rejects_invalid(data):
    with pytest.raises(ValueError):
        plan_from_json(data)


amounts = st.integers(min_value=0, max_value=10**24)
currencies = st.sampled_from(sorted(CURRENCIES))
priorities = st.sampled_from(PRIORITIES)


@given(amounts, currencies, priorities)
def test_fee_between_zero_and_amount(amount, currency, priority):
    assert 0 <= compute_fee(amount, currency, priority, P) <= amount


@given(amounts, amounts, currencies, priorities)
def test_fee_monotone_in_amount(a, b, currency, priority):
    lo, hi = sorted((a, b))
    assert compute_fee(lo, currency, priority, P) <= compute_fee(hi, currency, priority, P)


@given(amounts, currencies)
def test_higher_priority_never_cheaper(amount, currency):
    instant, standard, economy = (compute_fee(amount, currency, p, P) for p in PRIORITIES)
    assert instant >= standard >= economy
