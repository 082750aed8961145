"""Refunds over HTTP against the running stack (gunicorn, a worker, the CLI)."""

from __future__ import annotations

import uuid

import pytest

from tests import factories as f
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def pay(client, amount: int, priority: str = "standard") -> dict:
    body = f.card_body(f.new_card(), amount, priority=priority)
    r = client.post("/v1/payment_intents", body)
    assert r.status_code == 202, r.text
    intent = client.wait(r.json()["id"])
    assert intent["status"] == "succeeded", intent
    return intent


def test_refund_flow_with_idempotent_replay(client):
    intent = pay(client, 5000)
    key = str(uuid.uuid4())
    body = {"payment_intent": intent["id"], "amount": 2000, "reason": "requested_by_customer"}
    first = client.post("/v1/refunds", body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    refund = first.json()
    assert refund["object"] == "refund" and refund["id"].startswith("re_")
    assert (refund["amount"], refund["status"], refund["currency"]) == (2000, "succeeded", "USD")
    assert refund["payment_intent"] == intent["id"] and refund["reason"] == "requested_by_customer"
    assert 0 < refund["fee_refunded"] < intent["fee"]
    again = client.post("/v1/refunds", body, headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == refund
    reused = client.post("/v1/refunds", {**body, "amount": 1}, headers={"Idempotency-Key": key})
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"

    assert client.get(f"/v1/refunds/{refund['id']}").json() == refund
    assert client.get(f"/v1/payment_intents/{intent['id']}").json()["amount_refunded"] == 2000
    rest = client.post("/v1/refunds", {"payment_intent": intent["id"]}).json()
    assert rest["amount"] == 3000  # the default: everything still refundable
    assert refund["fee_refunded"] + rest["fee_refunded"] == intent["fee"]
    listed = client.get(f"/v1/refunds?payment_intent={intent['id']}&limit=1").json()
    assert [r["id"] for r in listed["data"]] == [rest["id"]] and listed["has_more"] is True
    page2 = client.get(
        f"/v1/refunds?payment_intent={intent['id']}&limit=1&starting_after={rest['id']}"
    ).json()
    assert [r["id"] for r in page2["data"]] == [refund["id"]] and page2["has_more"] is False

    over = client.post("/v1/refunds", {"payment_intent": intent["id"], "amount": 1})
    assert over.status_code == 400
    assert over.headers["Content-Type"].startswith("application/problem+json")
    assert over.json()["code"] == "charge_already_refunded"


def test_refund_errors_are_problems_with_a_param(client, other_client):
    intent = pay(client, 1000)
    cases = [
        ({"payment_intent": intent["id"], "amount": 1001}, 400, "amount", "amount_too_large"),
        ({"payment_intent": intent["id"], "amount": "5"}, 400, "amount", None),
        ({"payment_intent": intent["id"], "charge": "ch_1"}, 400, "charge", "parameter_unknown"),
        ({"amount": 5}, 400, "payment_intent", "parameter_missing"),
        ({"payment_intent": "pi_nope"}, 404, "payment_intent", "resource_missing"),
    ]
    for body, status, param, code in cases:
        r = client.post("/v1/refunds", body)
        assert r.status_code == status, (body, r.text)
        problem = r.json()
        assert problem["param"] == param and (code is None or problem["code"] == code)
    # Another merchant sees neither the intent nor its refunds.
    mine = client.post("/v1/refunds", {"payment_intent": intent["id"], "amount": 100}).json()
    assert other_client.post("/v1/refunds", {"payment_intent": intent["id"]}).status_code == 404
    assert other_client.get(f"/v1/refunds/{mine['id']}").status_code == 404
    assert other_client.get(f"/v1/refunds?payment_intent={intent['id']}").json()["data"] == []


def test_balance_after_instant_settlement_and_refunds(client):
    instant = pay(client, 3000, priority="instant")
    wait_until(
        lambda: (
            client.get(f"/v1/payment_intents/{instant['id']}").json()["settlement_status"]
            == "settled"
        ),
        15,
        "the instant intent to be settled",
    )
    standard = pay(client, 2000)
    a = client.post("/v1/refunds", {"payment_intent": instant["id"], "amount": 1000}).json()
    b = client.post("/v1/refunds", {"payment_intent": standard["id"], "amount": 500}).json()
    balance = client.get("/v1/balance").json()
    available = {x["currency"]: x["amount"] for x in balance["available"]}
    pending = {x["currency"]: x["amount"] for x in balance["pending"]}
    assert available["USD"] == instant["net"] - (1000 - a["fee_refunded"])
    assert pending["USD"] == standard["net"] - (500 - b["fee_refunded"])
