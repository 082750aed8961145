"""The test data factories hand out payers and addresses nobody else uses."""

from __future__ import annotations

import ipaddress

from shared.connectors.sandbox import TEST_CARDS, SandboxAcquirer, luhn_valid
from tests import factories as f
from tests.unit.test_sandbox import req


def test_new_cards_are_valid_unique_approving_and_not_special():
    cards = [f.new_card() for _ in range(500)]
    assert len(set(cards)) == len(cards)
    assert all(len(c) == 16 and luhn_valid(c) for c in cards)
    assert set(TEST_CARDS) == f.SPECIAL_CARDS == set(f.OUTCOMES)
    assert not set(cards) & f.SPECIAL_CARDS
    acquirer = SandboxAcquirer()
    assert all(acquirer.authorize(req(c, f"pi_{i}")).approved for i, c in enumerate(cards[:20]))


def test_card_body_without_a_number_gets_a_card_of_its_own():
    a, b = (f.card_body()["payment_method"]["card"]["number"] for _ in range(2))
    assert a != b and f.APPROVE not in (a, b)


def test_new_ips_are_unique_and_loopback_ones_bindable():
    ips = [f.new_ip() for _ in range(600)]
    assert len(set(ips)) == len(ips)
    assert all(ipaddress.ip_address(ip).is_private for ip in ips)
    local = [f.new_ip(loopback=True) for _ in range(300)]
    assert len(set(local)) == len(local)
    assert all(ipaddress.ip_address(ip).is_loopback and ip != "127.0.0.1" for ip in local)
