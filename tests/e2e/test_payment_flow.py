"""End to end over HTTP only: token, intents, pipeline, capture, cancel, errors."""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import requests

from tests import factories as f
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

EXPECTED = f.OUTCOMES


def test_every_test_card_over_http(client):
    created = {}
    for number in EXPECTED:
        r = client.post("/v1/payment_intents", f.card_body(number, 2000, priority="instant"))
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "processing" and body["object"] == "payment_intent"
        assert number not in r.text  # never the card number, only last4
        assert body["payment_method"]["card"]["last4"] == number[-4:]
        created[body["id"]] = number
    for intent_id, number in created.items():
        body = client.wait(intent_id)
        assert (body["status"], body["failure_code"]) == EXPECTED[number], body
    listed = client.get("/v1/payment_intents", params={"limit": 100}).json()
    assert {i["id"] for i in listed["data"]} == set(created)


def test_manual_capture_partial_then_balance(client):
    r = client.post(
        "/v1/payment_intents",
        f.card_body(f.new_card(), 10_000, capture_method="manual", priority="instant"),
    )
    intent = client.wait(r.json()["id"])
    assert intent["status"] == "requires_capture" and intent["amount_capturable"] == 10_000
    r = client.post(f"/v1/payment_intents/{intent['id']}/capture", {"amount_to_capture": 6000})
    assert r.status_code == 200, r.text
    captured = r.json()
    assert (captured["status"], captured["amount_received"]) == ("succeeded", 6000)
    assert captured["fee"] == 6000 * 290 // 10_000 + 30  # instant: 2.9 % + 30
    # capturing again is refused and changes nothing
    again = client.post(f"/v1/payment_intents/{intent['id']}/capture", {})
    assert again.status_code == 400
    assert again.headers["Content-Type"].startswith("application/problem+json")

    def available_usd():
        balance = client.get("/v1/balance").json()["available"]
        return {b["currency"]: b["amount"] for b in balance}.get("USD")

    # instant settlement moves the net to available
    wait_until(lambda: available_usd() == 6000 - captured["fee"], 15, "the net to be available")


def test_cancel_a_held_payment(client):
    r = client.post("/v1/payment_intents", f.card_body(f.new_card(), capture_method="manual"))
    intent = client.wait(r.json()["id"])
    r = client.post(f"/v1/payment_intents/{intent['id']}/cancel", {})
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert r.json()["cancellation_reason"] == "requested_by_customer"
    assert client.post(f"/v1/payment_intents/{intent['id']}/capture", {}).status_code == 400


def test_ten_concurrent_creates_with_one_key_make_one_intent(client):
    key = str(uuid.uuid4())
    body = f.card_body(f.new_card(), 1234)

    def create(_):
        return client.session.post(
            client.base + "/v1/payment_intents",
            json=body,
            headers={"Idempotency-Key": key},
            timeout=10,
        )

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(create, range(10)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {202, 409}, [r.text for r in responses]
    ids = {r.json()["id"] for r in responses if r.status_code == 202}
    assert len(ids) == 1
    listed = client.get("/v1/payment_intents", params={"limit": 100}).json()["data"]
    assert [i["id"] for i in listed] == list(ids)
    # once finished, the same key and body replay the first response
    replay = create(0)
    assert replay.status_code == 202 and replay.json()["id"] in ids
    assert replay.headers.get("Idempotent-Replayed") == "true"
    other = client.post(
        "/v1/payment_intents", {**body, "amount": 999}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


def test_merchants_cannot_see_each_other(client, other_client):
    r = client.post("/v1/payment_intents", f.card_body(f.new_card()))
    intent_id = r.json()["id"]
    for path in (f"/v1/payment_intents/{intent_id}",):
        assert other_client.get(path).status_code == 404
    assert other_client.post(f"/v1/payment_intents/{intent_id}/cancel", {}).status_code == 404
    assert other_client.get("/v1/payment_intents").json()["data"] == []


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_bad_tokens_get_401(stack, client):
    base = stack["url"]
    claims = jwt.decode(client.token, options={"verify_signature": False})
    header = jwt.get_unverified_header(client.token)
    jwks = requests.get(f"{base}/.well-known/jwks.json", timeout=5).json()
    public_x = jwks["keys"][0]["x"]
    expired = {**claims, "exp": int(time.time()) - 60}
    tampered = client.token.split(".")
    tampered[1] = _b64({**claims, "sub": "mch_someone_else"})
    tokens = {
        "missing": None,
        "garbage": "not.a.token",
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + ".",
        "hs256 with public key": jwt.encode(
            claims, public_x, algorithm="HS256", headers={"kid": header["kid"]}
        ),
        "tampered": ".".join(tampered),
        "expired": _b64(header) + "." + _b64(expired) + "." + client.token.split(".")[2],
    }
    for name, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = requests.get(f"{base}/v1/payment_intents", headers=headers, timeout=5)
        assert r.status_code == 401, name
        assert r.headers["Content-Type"].startswith("application/problem+json"), name
        assert r.json()["status"] == 401


def test_bad_input_is_rejected_and_changes_nothing(client):
    cases = [
        (f.card_body(amount=10.5), 400, "amount"),
        (f.card_body(amount="100"), 400, "amount"),
        (f.card_body(currency="XXX"), 400, "currency"),
        (f.card_body("4242424242424241"), 400, "payment_method[card][number]"),
        ({**f.card_body(), "colour": "red"}, 400, "colour"),
    ]
    for body, status, param in cases:
        r = client.post("/v1/payment_intents", body)
        assert r.status_code == status, (param, r.text)
        problem = r.json()
        assert problem["param"] == param and problem["type"] and problem["title"]
    r = client.session.post(
        client.base + "/v1/payment_intents",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 400
    big = {**f.card_body(), "description": "x" * (70 * 1024)}
    assert client.post("/v1/payment_intents", big).status_code == 413
    assert client.get("/v1/payment_intents").json()["data"] == []
