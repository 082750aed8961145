"""The hash chain's canonical bytes, links and seals."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shared.domain import hashchain as hc

T = {
    "id": 7,
    "kind": "posted",
    "debit_account_id": 1,
    "credit_account_id": 2,
    "amount": 10**30,  # beyond any float: must stay exact
    "currency": "ETH",
    "pending_id": None,
    "timeout_at": None,
    "intent_id": "pi_1",
    "reason": "fee",
    "created_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
}


def test_canonical_bytes_are_stable_and_exact():
    data = hc.entry_bytes(T)
    assert data == (
        b'["7","posted","1","2","1000000000000000000000000000000","ETH",null,null,'
        b'"pi_1","fee","2026-01-02T03:04:05.000006+00:00"]'
    )
    # A row (sequence in FIELDS order) and a dict give the same bytes.
    assert hc.entry_bytes([T[f] for f in hc.FIELDS]) == data


def test_same_instant_in_another_zone_same_bytes():
    other = dict(T, created_at=T["created_at"].astimezone(timezone(timedelta(hours=5))))
    assert hc.entry_bytes(other) == hc.entry_bytes(T)


@pytest.mark.parametrize("name", hc.FIELDS)
def test_every_field_changes_the_bytes(name):
    changed = {
        "created_at": T["created_at"] + timedelta(microseconds=1),
        "pending_id": 3,
        "timeout_at": T["created_at"],
        "intent_id": "pi_2",
    }.get(name)
    if changed is None:
        changed = T[name] + 1 if isinstance(T[name], int) else T[name] + "x"
    assert hc.entry_bytes(dict(T, **{name: changed})) != hc.entry_bytes(T)


def test_text_cannot_forge_field_boundaries():
    a = dict(T, intent_id='pi_1","fee', reason="")
    assert hc.entry_bytes(a) != hc.entry_bytes(T)


def test_link_is_sha256_of_previous_hash_bytes_and_data():
    expected = hashlib.sha256(bytes(32) + b"abc").hexdigest()
    assert hc.link(hc.GENESIS, b"abc") == expected


def test_chain_depends_on_order_and_start():
    a, b = b"a", b"b"
    ab = hc.chain(hc.GENESIS, [a, b])
    assert ab[0] == hc.link(hc.GENESIS, a) and ab[1] == hc.link(ab[0], b)
    assert hc.chain(hc.GENESIS, [b, a])[-1] != ab[-1]
    assert hc.chain("1" * 64, [a, b])[-1] != ab[-1]


def test_seal_covers_day_range_count_and_last_hash():
    base = (hc.GENESIS, date(2026, 1, 2), 1, 9, 5, "a" * 64)
    seal = hc.seal_hash(*base)
    for i, other in enumerate(
        ["1" * 64, date(2026, 1, 3), 2, 10, 4, "b" * 64],
    ):
        changed = list(base)
        changed[i] = other
        assert hc.seal_hash(*changed) != seal
    # An empty day still gets a seal, chained from the previous one.
    assert len(hc.seal_hash(seal, date(2026, 1, 3), None, None, 0, seal)) == 64
