from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.limits import LimitRequest, Limits, allocate, counter_keys

KEYS = counter_keys("mch_1", "card:abc", "USD", date(2026, 11, 22))


def req(i, amount, merchant=Limits(), payer=Limits(), keys=KEYS):
    return LimitRequest(f"pi_{i}", amount, merchant, payer, keys)


def test_counter_keys_are_per_day_and_month():
    md, mm, pd, pm = KEYS
    assert md.endswith(":d:2026-11-22") and mm.endswith(":m:2026-11")
    assert pd.startswith("p:mch_1:card:abc:USD")


def test_accepts_until_the_daily_limit_then_refuses():
    limits = Limits(daily=2500)
    decisions = allocate([req(i, 1000, merchant=limits) for i in range(4)], {})
    assert [d.accepted for d in decisions] == [True, True, False, False]
    assert decisions[2].reason == "merchant daily"


def test_existing_usage_counts():
    decisions = allocate([req(1, 100, payer=Limits(monthly=1000))], {KEYS[3]: 950})
    assert not decisions[0].accepted and decisions[0].reason == "payer monthly"


def test_per_transaction_limit():
    decisions = allocate([req(1, 501, merchant=Limits(per_transaction=500))], {})
    assert decisions[0].reason == "merchant per-transaction"


def test_a_refused_request_reserves_nothing():
    limits = Limits(daily=1000)
    decisions = allocate(
        [req(1, 900, merchant=limits), req(2, 200, merchant=limits), req(3, 100, merchant=limits)],
        {},
    )
    assert [d.accepted for d in decisions] == [True, False, True]


@given(
    st.lists(st.integers(min_value=1, max_value=10_000), max_size=60),
    st.integers(min_value=0, max_value=100_000),
)
def test_never_overshoots(amounts, limit):
    limits = Limits(daily=limit, monthly=limit)
    decisions = allocate([req(i, a, merchant=limits) for i, a in enumerate(amounts)], {})
    total = sum(a for a, d in zip(amounts, decisions, strict=True) if d.accepted)
    assert total <= limit
