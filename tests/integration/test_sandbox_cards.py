"""The sandbox behaves as documented: test cards keep their outcomes however often used.

The real pipeline (the session's worker and relay, Postgres, Redis) behind the
API in-process. A new user's first hour, as issue 13 found it: a few dozen
uses of the approving card across merchants within minutes, then the risk test
cards (Stripe's Radar numbers); and an ordinary number, which the velocity
rules still catch. Each test pays from an address of its own (its API client's),
so only its own intents count by IP.
"""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from intake.app import create_app
from shared.db.tables import events, ledger_transfers
from shared.db.uow import UnitOfWork
from shared.security.signing import SigningKeys
from shared.services import merchants, views
from shared.services.audit import Actor
from tests import factories as f
from tests.support.apiclient import OwnAddressClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keys(settings):
    return SigningKeys.from_settings(settings)


class Shop:
    """One merchant of the test, paying and reading through the API."""

    def __init__(self, api, merchant: dict):
        self.api, self.id = api, merchant["merchant_id"]
        r = api.simulate_post("/v1/oauth/token", json=f.client_credentials(merchant))
        assert r.status_code == 200, r.text
        self.auth = {"Authorization": f"Bearer {r.json['access_token']}"}

    def pay(self, number: str, amount: int = 500, **extra) -> str:
        body = f.card_body(number, amount, priority="instant", **extra)
        r = self.api.simulate_post("/v1/payment_intents", json=body, headers=self.auth)
        assert r.status_code == 202, r.text
        return r.json["id"]

    def intent(self, intent_id: str) -> dict:
        r = self.api.simulate_get(f"/v1/payment_intents/{intent_id}", headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json

    def events(self, type_: str) -> list[dict]:
        r = self.api.simulate_get(
            "/v1/events", params={"type": type_, "limit": 100}, headers=self.auth
        )
        assert r.status_code == 200, r.text
        return r.json["data"]


@pytest.fixture
def shops(settings, engine, keys, vault, make_merchant):
    """Factory: a merchant (new, or the one given) with its threshold, and its API client."""
    app = create_app(settings, engine=engine, dispatch=lambda *a, **k: None, keys=keys, vault=vault)
    api = OwnAddressClient(app)  # one address for all of the test's merchants

    def open_shop(threshold: int | None = None, merchant: dict | None = None) -> Shop:
        merchant = merchant or make_merchant()
        if threshold is not None:
            with UnitOfWork(engine) as u:
                merchants.set_fraud_threshold(u, merchant["merchant_id"], threshold)
                u.commit()
        return Shop(api, merchant)

    return open_shop


def _reasons(row) -> dict[str, int]:
    return {r["code"]: r["points"] for r in row.risk_reasons or []}


def _review_events(engine, merchant_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(events).where(
                events.c.merchant_id == merchant_id, events.c.type == "review.opened"
            )
        ).all()


def test_the_documented_cards_keep_their_outcome_however_often_used_across_merchants(
    worker, shops, engine
):
    three = [shops() for _ in range(3)]
    # Within minutes, from one address: 24 approvals and 12 declines over three merchants.
    # Scored as ordinary numbers, card velocity (+50 past 10 others), IP velocity (+25 past
    # 20) and card testing (+40 at 3 declines) would block most of them.
    approvals = [three[i % 3].pay(f.APPROVE) for i in range(24)]
    declines = [three[i % 3].pay(f.DECLINE) for i in range(12)]
    rows = f.wait_until_final(engine, approvals + declines)
    for i in approvals:
        row = rows[i]
        assert (row.status, row.risk_score, row.risk_level) == ("succeeded", 0, "normal"), i
        assert _reasons(row) == {}
    for i in declines:
        row = rows[i]
        assert (row.status, row.failure_code, row.risk_score) == ("failed", "card_declined", 0)
    shown = three[0].intent(approvals[0])
    assert shown["risk"] == {"score": 0, "level": "normal", "reasons": []}
    assert shown["review"] is None

    # Their intents still count towards the address's velocity for any other number.
    other = three[0].pay(f.new_card())
    row = f.wait_until_final(engine, [other])[other]
    assert (row.status, _reasons(row)) == ("succeeded", {"ip_velocity": 25})


def test_an_ordinary_number_still_trips_card_velocity_across_merchants(worker, shops, engine):
    card = f.new_card()
    three = [shops() for _ in range(3)]
    # Eleven uses over three merchants: each sees at most 10 others (+30 past 5).
    earlier = [three[i % 3].pay(card) for i in range(11)]
    rows = f.wait_until_final(engine, earlier)
    assert {r.status for r in rows.values()} == {"succeeded"}
    assert all(_reasons(r).get("card_velocity") in (None, 30) for r in rows.values())

    # The twelfth, at a fourth merchant blocking at 55: 11 others, +50, in its review band.
    strict = shops(threshold=55)
    twelfth = f.wait_until_final(engine, [strict.pay(card)])
    (row,) = twelfth.values()
    assert _reasons(row) == {"card_velocity": 50}
    assert (row.status, row.risk_score, row.risk_level) == ("succeeded", 50, "elevated")
    assert [e.object_id for e in _review_events(engine, strict.id)] == [
        views.review_json(row.id, 50)["id"]
    ]

    # Past 20 intents from this address as well: 50 + 25 reaches the default 75, blocked.
    more = [three[i % 3].pay(card) for i in range(10)]
    f.wait_until_final(engine, more)
    last = three[0].pay(card)
    row = f.wait_until_final(engine, [last])[last]
    assert _reasons(row) == {"card_velocity": 50, "ip_velocity": 25}
    assert (row.status, row.failure_code, row.risk_level) == (
        "failed",
        "fraud_suspected",
        "highest",
    )


def test_the_highest_risk_card_is_blocked_every_time_before_the_acquirer(worker, shops, engine):
    lenient, default = shops(threshold=100), shops()
    ids = [shop.pay(f.HIGHEST_RISK) for shop in (lenient, default) for _ in range(3)]
    rows = f.wait_until_final(engine, ids)
    for row in rows.values():
        assert (row.status, row.failure_code) == ("failed", "fraud_suspected")
        assert (row.risk_score, row.risk_level) == (100, "highest")
        assert _reasons(row) == {"highest_risk_test_card": 100}  # no velocity on top
    shown = default.intent(ids[-1])
    assert shown["risk"]["level"] == "highest" and shown["review"] is None
    assert shown["failure_code"] == "fraud_suspected"
    with engine.connect() as conn:  # no hold was ever placed: the acquirer never saw them
        held = conn.execute(
            select(ledger_transfers.c.id).where(ledger_transfers.c.intent_id.in_(ids))
        ).all()
    assert held == []
    assert _review_events(engine, default.id) == []


def test_the_elevated_risk_card_proceeds_with_a_review_and_its_event(worker, shops, hooked, engine):
    merchant, receiver = hooked
    shop, strict = shops(merchant=merchant), shops(threshold=30)
    paid = [shop.pay(f.ELEVATED_RISK) for _ in range(12)]  # however often: no velocity adds up
    held = shop.pay(f.ELEVATED_RISK, capture_method="manual")
    at_30 = strict.pay(f.ELEVATED_RISK)
    rows = f.wait_until_final(engine, [*paid, held, at_30])

    for i in paid:
        row = rows[i]
        # 65: the floor of the default review band, 65-74 under the block at 75.
        assert (row.status, row.risk_score, row.risk_level) == ("succeeded", 65, "elevated")
        assert _reasons(row) == {"elevated_risk_test_card": 65}
    assert (rows[held].status, rows[held].risk_level) == ("requires_capture", "elevated")
    # The merchant's own band: 20-29 under its threshold of 30.
    assert (rows[at_30].status, rows[at_30].risk_score) == ("succeeded", 20)

    review = views.review_json(paid[0], 65)
    assert review["id"] == "prv_" + paid[0].removeprefix("pi_")
    shown = shop.intent(paid[0])
    assert shown["risk"]["level"] == "elevated" and shown["review"] == review

    # One review.opened per intent, recorded with its score, listed and delivered like the others.
    reviews = {i: views.review_json(i, 65) for i in [*paid, held]}
    recorded = {e.object_id: e.data for e in _review_events(engine, shop.id)}
    assert recorded == {r["id"]: r for r in reviews.values()}
    listed = shop.events("review.opened")
    assert sorted(e["data"]["object"]["id"] for e in listed) == sorted(recorded)
    assert [e.data for e in _review_events(engine, strict.id)] == [views.review_json(at_30, 20)]

    def arrived(r):
        got = {g.event["id"] for g in r.received}
        succeeded = {
            g.event["data"]["object"]["id"]
            for g in r.received
            if g.event["type"] == "payment_intent.succeeded"
        }
        return {e["id"] for e in listed} <= got and set(paid) <= succeeded

    receiver.wait_for(arrived)
    assert receiver.rejected == 0
    delivered = {g.event["id"]: g.event for g in receiver.received}
    assert all(delivered[e["id"]] == e for e in listed)  # what the API lists is what arrived
    # The intent's own events carry the review too.
    for g in receiver.received:
        if g.event["type"] == "payment_intent.succeeded":
            intent = g.event["data"]["object"]
            assert intent["review"] == reviews[intent["id"]]


def test_an_operators_blocklist_entry_still_blocks_a_test_card(worker, shops, engine):
    shop = shops()
    customer = f"cus_{secrets.token_hex(6)}"  # this test's own: the entry blocks no one else
    before = shop.pay(f.APPROVE, customer=customer)
    assert f.wait_until_final(engine, [before])[before].status == "succeeded"
    with UnitOfWork(engine) as u:
        merchants.block(u, "customer", customer, "test", actor=Actor("test:fixture"))
        u.commit()
    after = shop.pay(f.APPROVE, customer=customer)
    row = f.wait_until_final(engine, [after])[after]
    assert (row.status, row.failure_code, row.risk_level) == (
        "failed",
        "fraud_suspected",
        "highest",
    )
    assert _reasons(row) == {"blocklisted": 100}
