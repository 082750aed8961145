import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain import ledger as L


def t(kind, amount, pending_amount=0):
    return L.Transfer(kind, 1, 2, amount, "USD", "test", pending_amount=pending_amount)


def test_posted_moves_posted_balances():
    d = L.Deltas()
    d.apply(t(L.POSTED, 100))
    assert d.by_account == {1: [0, 100, 0, 0], 2: [0, 0, 0, 100]}


def test_hold_then_partial_post_releases_the_rest():
    d = L.Deltas()
    d.apply(t(L.PENDING, 100))
    d.apply(t(L.POST_PENDING, 60, pending_amount=100))
    assert d.by_account == {1: [0, 60, 0, 0], 2: [0, 0, 0, 60]}


def test_void_returns_to_zero():
    d = L.Deltas()
    d.apply(t(L.PENDING, 100))
    d.apply(t(L.VOID_PENDING, 100, pending_amount=100))
    assert d.by_account == {1: [0, 0, 0, 0], 2: [0, 0, 0, 0]}


def test_cannot_post_more_than_held():
    with pytest.raises(ValueError):
        L.Deltas().apply(t(L.POST_PENDING, 101, pending_amount=100))


def test_amount_must_be_positive():
    with pytest.raises(ValueError):
        L.Deltas().apply(t(L.POSTED, 0))


@given(st.lists(st.tuples(st.sampled_from([L.POSTED, L.PENDING]), st.integers(1, 10**30))))
def test_debits_always_equal_credits(transfers):
    d = L.Deltas()
    for kind, amount in transfers:
        d.apply(t(kind, amount))
    debits = d.by_account.get(1, [0, 0, 0, 0])
    credits = d.by_account.get(2, [0, 0, 0, 0])
    assert debits[0] == credits[2] and debits[1] == credits[3]
