"""The intake API against a real Postgres, through falcon's TestClient.

Self-contained: fixtures live here until they move into a conftest. The module
has a database of its own: these tests drive intents through the stages
in-process, and the layer's outbox relay and worker (or anyone's) must never
take them on. Every test makes its own merchant, card and client address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import falcon
import falcon.testing
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select, update

from intake.app import create_app
from shared.config import Settings
from shared.connectors.sandbox import SandboxAcquirer
from shared.db.tables import events, idempotency_keys, payment_intents, webhook_deliveries
from shared.db.uow import UnitOfWork
from shared.domain.scopes import ALL_SCOPES
from shared.security.signing import SigningKeys
from shared.security.vault import Vault
from shared.services import retention
from shared.services.merchants import create_merchant
from shared.services.stages import authorize, fees, fraud, limits
from tests import factories as f
from tests.conftest import free_port
from tests.support.scratchdb import scratch_database
from tests.support.units import bound

pytestmark = pytest.mark.integration

# This test's card: card velocity and payer history count only its own intents
# (set per test by ``_own_card``, read when a body is built).
VISA = f.new_card()


@pytest.fixture(autouse=True)
def _own_card(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "VISA", f.new_card())


def card_body(**over) -> dict:
    body = {
        "amount": 1000,
        "currency": "USD",
        "payment_method": {
            "type": "card",
            "card": {"number": VISA, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        },
    }
    body.update(over)
    return body


class RecordingDispatch:
    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, step, ids, countdown=None):
        self.calls.append((step, list(ids)))


@pytest.fixture(scope="module")
def scratch(database):
    with scratch_database("clearhouse_intake") as (url, eng):
        yield url, eng


@pytest.fixture(scope="module")
def engine(scratch):
    return scratch[1]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, scratch):
    # Keys come from a fresh key_dir, never from whatever the environment holds.
    with pytest.MonkeyPatch.context() as mp:
        for name in ("JWT_PRIVATE_KEY", "CARD_KEYS", "CARD_FINGERPRINT_KEY"):
            mp.delenv(name, raising=False)
        key_dir = str(tmp_path_factory.mktemp("keys"))
        yield Settings.from_env(database_url=scratch[0], key_dir=key_dir)


@pytest.fixture(scope="module")
def keys(settings):
    return SigningKeys.from_settings(settings)


@pytest.fixture(scope="module")
def vault(settings):
    return Vault.from_settings(settings)


@pytest.fixture
def dispatch():
    return RecordingDispatch()


class Client(falcon.testing.TestClient):
    """A TestClient whose requests come from one client address (the test's own)."""

    def __init__(self, app, remote_addr: str):
        super().__init__(app)
        self.remote_addr = remote_addr

    def simulate_request(self, *args, **kwargs):
        kwargs.setdefault("remote_addr", self.remote_addr)
        return super().simulate_request(*args, **kwargs)


@pytest.fixture
def client(settings, engine, keys, vault, dispatch):
    app = create_app(settings, engine=engine, dispatch=dispatch, keys=keys, vault=vault)
    return Client(app, f.new_ip())


def new_merchant(engine, vault) -> dict:
    with UnitOfWork(engine) as uow:
        merchant = create_merchant(uow, vault, f"shop-{uuid.uuid4().hex[:8]}")
        uow.commit()
    return merchant


def get_tokens(client, merchant) -> dict:
    resp = client.simulate_post(
        "/v1/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": merchant["client_id"],
            "client_secret": merchant["client_secret"],
        },
    )
    assert resp.status_code == 200, resp.text
    return resp.json


@pytest.fixture
def merchant(engine, vault):
    return new_merchant(engine, vault)


@pytest.fixture
def auth(client, merchant) -> dict:
    return {"Authorization": f"Bearer {get_tokens(client, merchant)['access_token']}"}


def assert_problem(resp, status: int, code: str | None = None, param: str | None = None):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = json.loads(resp.text)
    for member in ("type", "title", "status", "detail", "request_id"):
        assert member in body, body
    assert body["status"] == status
    assert body["request_id"] == resp.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code, body
        assert body["type"].endswith("/" + code)
    if param is not None:
        assert body["param"] == param, body
    return body


def create(client, auth, body=None, key=None):
    headers = dict(auth)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.simulate_post("/v1/payment_intents", json=body or card_body(), headers=headers)


def drive_to_requires_capture(engine, vault, intent_id):
    """Run the pipeline stages in-process (no Celery) up to the manual-capture hold."""
    for step in (
        limits.run,
        lambda c, ids: fraud.run(c, ids, test_cards={}, default_threshold=75),
        fees.run,
    ):
        with UnitOfWork(engine) as uow:
            assert step(uow, [intent_id]).advanced == [intent_id]
            uow.commit()
    with UnitOfWork(engine) as uow:
        authorize.place_holds(uow, [intent_id], hold_ttl_s=3600)
        rows = authorize.held(uow, [intent_id])
        uow.commit()
    answers = authorize.ask_acquirer(rows, SandboxAcquirer(), vault)
    with UnitOfWork(engine) as uow:
        authorize.apply(uow, answers, max_attempts=3, hold_ttl_s=3600)
        uow.commit()


# --- OAuth -----------------------------------------------------------------


def test_token_by_json_form_and_basic(client, merchant, keys, settings):
    tokens = get_tokens(client, merchant)
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == " ".join(ALL_SCOPES)
    assert 0 < tokens["expires_in"] <= 900 and tokens["refresh_token"].startswith("rt_")
    claims = keys.verify(
        tokens["access_token"], audience=settings.jwt_audience, issuer=settings.jwt_issuer
    )
    assert claims["sub"] == merchant["merchant_id"]

    form = client.simulate_post(
        "/v1/oauth/token",
        body=f"grant_type=client_credentials&client_id={merchant['client_id']}"
        f"&client_secret={merchant['client_secret']}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 200 and form.headers["cache-control"] == "no-store"

    basic = base64.b64encode(f"{merchant['client_id']}:{merchant['client_secret']}".encode())
    resp = client.simulate_post(
        "/v1/oauth/token",
        json={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic.decode()}"},
    )
    assert resp.status_code == 200, resp.text


def test_token_errors(client, merchant):
    def post(body, **kw):
        return client.simulate_post("/v1/oauth/token", json=body, **kw)

    wrong = {"grant_type": "client_credentials", "client_id": merchant["client_id"]}
    body = assert_problem(post({**wrong, "client_secret": "cs_nope"}), 401, "invalid_client")
    assert body["error"] == "invalid_client"
    assert_problem(
        post({**wrong, "client_id": "ci_unknown", "client_secret": "x"}), 401, "invalid_client"
    )
    assert_problem(post({"client_id": merchant["client_id"]}), 400, "invalid_request")
    assert_problem(post({"grant_type": "password"}), 400, "unsupported_grant_type")
    bad_basic = base64.b64encode(f"{merchant['client_id']}:wrong".encode()).decode()
    resp = post(
        {"grant_type": "client_credentials"}, headers={"Authorization": "Basic " + bad_basic}
    )
    assert_problem(resp, 401, "invalid_client")
    assert resp.headers["www-authenticate"].startswith("Basic")


def refresh_grant(merchant, token: str) -> dict:
    """A refresh request, authenticated as the merchant's client (as it must be)."""
    return {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": merchant["client_id"],
        "client_secret": merchant["client_secret"],
    }


def test_refresh_rotates_and_reuse_revokes_family(client, merchant):
    first = get_tokens(client, merchant)["refresh_token"]

    def refresh(token):
        return client.simulate_post("/v1/oauth/token", json=refresh_grant(merchant, token))

    second = refresh(first)
    assert second.status_code == 200, second.text
    second_rt = second.json["refresh_token"]
    assert second_rt != first
    # Re-using the spent token is theft: the whole family dies, the new one too.
    assert_problem(refresh(first), 400, "invalid_grant")
    assert_problem(refresh(second_rt), 400, "invalid_grant")
    assert_problem(refresh("rt_unknown"), 400, "invalid_grant")


def test_revoke(client, merchant):
    token = get_tokens(client, merchant)["refresh_token"]
    assert client.simulate_post("/v1/oauth/revoke", json={"token": token}).json == {}
    resp = client.simulate_post("/v1/oauth/token", json=refresh_grant(merchant, token))
    assert_problem(resp, 400, "invalid_grant")
    assert client.simulate_post("/v1/oauth/revoke", json={"token": "nope"}).status_code == 200
    assert_problem(client.simulate_post("/v1/oauth/revoke", json={}), 400, "invalid_request")


def test_jwks(client, keys):
    resp = client.simulate_get("/.well-known/jwks.json")
    assert resp.json == keys.jwks() and resp.json["keys"][0]["kty"] == "OKP"


# --- bearer auth -------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict, claims: dict, secret: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _forged_tokens(keys, settings, merchant_id) -> dict:
    now = int(time.time())
    claims = {
        "sub": merchant_id,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "scope": " ".join(ALL_SCOPES),
        "iat": now,
        "exp": now + 300,
    }
    # The classic confusion attack: HMAC keyed with the (public) verification key.
    jwk = keys.jwks()["keys"][0]
    public_pem = jwt.PyJWK(jwk).key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return {
        "garbage": "not.a.jwt",
        "expired": keys.sign({**claims, "iat": now - 1000, "nbf": now - 1000, "exp": now - 10}),
        "alg_none": _hand_made({"alg": "none", "typ": "JWT"}, claims, None),
        "hs256_public_key": _hand_made({"alg": "HS256", "kid": keys.kid}, claims, public_pem),
        "wrong_audience": keys.sign({**claims, "aud": "someone-else"}),
    }


def test_bearer_rejections(client, keys, settings, merchant):
    resp = client.simulate_get("/v1/payment_intents")
    assert_problem(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    for name, token in _forged_tokens(keys, settings, merchant["merchant_id"]).items():
        resp = client.simulate_get(
            "/v1/payment_intents", headers={"Authorization": f"Bearer {token}"}
        )
        assert_problem(resp, 401, "invalid_token")
        assert 'error="invalid_token"' in resp.headers["www-authenticate"], name


# --- payment intents ---------------------------------------------------------


def test_create_get_list(client, auth, dispatch, engine, vault):
    resp = create(client, auth)
    assert resp.status_code == 202, resp.text
    intent = resp.json
    assert (
        intent["status"] == "processing" and intent["payment_method"]["card"]["last4"] == VISA[-4:]
    )
    assert VISA not in resp.text
    assert dispatch.calls == []  # the outbox relay enqueues new intents, not the API

    got = client.simulate_get(f"/v1/payment_intents/{intent['id']}", headers=auth)
    assert got.status_code == 200 and got.json["id"] == intent["id"]

    ids = [intent["id"]] + [create(client, auth).json["id"] for _ in range(2)]
    page = client.simulate_get("/v1/payment_intents", params={"limit": "2"}, headers=auth).json
    assert page["object"] == "list" and page["has_more"] is True
    assert [i["id"] for i in page["data"]] == ids[::-1][:2]
    rest = client.simulate_get(
        "/v1/payment_intents",
        params={"limit": "2", "starting_after": page["data"][-1]["id"]},
        headers=auth,
    ).json
    assert [i["id"] for i in rest["data"]] == [ids[0]] and rest["has_more"] is False
    canceled = client.simulate_get(
        "/v1/payment_intents", params={"status": "canceled"}, headers=auth
    ).json
    assert canceled["data"] == []

    # Another merchant sees none of it: 404, not 403.
    other = {
        "Authorization": f"Bearer {get_tokens(client, new_merchant(engine, vault))['access_token']}"
    }
    assert_problem(
        client.simulate_get(f"/v1/payment_intents/{intent['id']}", headers=other),
        404,
        "resource_missing",
    )
    assert client.simulate_get("/v1/payment_intents", headers=other).json["data"] == []


def _hooked_auth(client, engine, vault) -> dict:
    """Bearer headers of a new merchant whose first endpoint has a (never reached) URL."""
    with UnitOfWork(engine) as uow:
        merchant = create_merchant(
            uow, vault, f"shop-{uuid.uuid4().hex[:8]}", "http://127.0.0.1:9/hooks", True
        )
        uow.commit()
    return {"Authorization": f"Bearer {get_tokens(client, merchant)['access_token']}"}


def _first_delivery(engine, intent_id: str) -> str:
    with engine.connect() as conn:
        (delivery,) = conn.execute(
            select(webhook_deliveries.c.id)
            .join(events, events.c.id == webhook_deliveries.c.event_id)
            .where(events.c.object_id == intent_id, events.c.type == "payment_intent.processing")
        ).scalars()
    return delivery


def _mine(calls, ids) -> dict[str, list[str]]:
    """The relay's messages cut down to these ids (it sends every unsent intent of the module)."""
    sent: dict[str, list[str]] = {}
    for step, batch in calls:
        sent.setdefault(step, []).extend(i for i in batch if i in ids)
    return {step: batch for step, batch in sent.items() if batch}


def test_create_leaves_its_first_webhook_to_the_relay(client, engine, vault, dispatch):
    """The API publishes nothing for a create; the relay sends the intent and its delivery."""
    from workers.relay import relay_once

    intent = create(client, _hooked_auth(client, engine, vault)).json
    delivery = _first_delivery(engine, intent["id"])
    assert dispatch.calls == []  # no broker round trip in the request

    relayed = RecordingDispatch()
    assert relay_once(engine, 1000, relayed) >= 1
    assert _mine(relayed.calls, {intent["id"], delivery}) == {
        "limits": [intent["id"]],
        "deliver_webhooks": [delivery],
    }
    # Sent once: the next pass has nothing of it.
    again = RecordingDispatch()
    relay_once(engine, 1000, again)
    assert _mine(again.calls, {intent["id"], delivery}) == {}


def test_a_failed_relay_publish_sends_intent_and_webhook_on_the_next_pass(
    client, engine, vault, dispatch
):
    from workers.relay import relay_once

    intent = create(client, _hooked_auth(client, engine, vault)).json
    delivery = _first_delivery(engine, intent["id"])

    def broker_away_for_webhooks(step, ids, countdown=None):
        if step == "deliver_webhooks":
            raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        relay_once(engine, 1000, broker_away_for_webhooks)
    with engine.connect() as conn:
        enqueued = conn.execute(
            select(payment_intents.c.enqueued_at).where(payment_intents.c.id == intent["id"])
        ).scalar_one()
    assert enqueued is None  # the claim rolled back with the failed publish

    relayed = RecordingDispatch()
    relay_once(engine, 1000, relayed)
    assert _mine(relayed.calls, {intent["id"], delivery}) == {
        "limits": [intent["id"]],
        "deliver_webhooks": [delivery],
    }
    assert dispatch.calls == []


@pytest.mark.parametrize(
    "params, param",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"status": "weird"}, "status"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_list_rejects_bad_params(client, auth, params, param):
    resp = client.simulate_get("/v1/payment_intents", params=params, headers=auth)
    assert_problem(resp, 400, param=param)


def test_list_unknown_cursor(client, auth):
    resp = client.simulate_get(
        "/v1/payment_intents", params={"starting_after": "pi_nope"}, headers=auth
    )
    assert_problem(resp, 404, "resource_missing", "starting_after")


def test_capture_and_cancel(client, auth, engine, vault, dispatch):
    manual = create(client, auth, card_body(capture_method="manual", priority="instant")).json
    drive_to_requires_capture(engine, vault, manual["id"])
    held = client.simulate_get(f"/v1/payment_intents/{manual['id']}", headers=auth).json
    assert held["status"] == "requires_capture", held

    path = f"/v1/payment_intents/{manual['id']}/capture"
    assert_problem(
        client.simulate_post(path, json={"amount_to_capture": 5000}, headers=auth),
        400,
        "amount_too_large",
        "amount_to_capture",
    )
    assert_problem(
        client.simulate_post(path, json={"amount": 1}, headers=auth), 400, "parameter_unknown"
    )
    captured = client.simulate_post(path, json={"amount_to_capture": 600}, headers=auth)
    assert captured.status_code == 200, captured.text
    assert captured.json["status"] == "succeeded" and captured.json["amount_received"] == 600
    assert dispatch.calls[-1] == ("settle_instant", [manual["id"]])

    balance = client.simulate_get("/v1/balance", headers=auth).json
    assert balance["object"] == "balance"
    assert [b["currency"] for b in balance["pending"]] == ["USD"]

    other = create(client, auth).json
    path = f"/v1/payment_intents/{other['id']}/cancel"
    done = client.simulate_post(path, json={"cancellation_reason": "duplicate"}, headers=auth)
    assert done.status_code == 200 and done.json["status"] == "canceled", done.text
    assert_problem(client.simulate_post(path, headers=auth), 400, "payment_intent_unexpected_state")
    assert_problem(
        client.simulate_post(path, json={"why": "x"}, headers=auth), 400, "parameter_unknown", "why"
    )


# --- idempotency -------------------------------------------------------------


def _key_row(engine, merchant_id, key):
    with engine.connect() as conn:
        return conn.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.merchant_id == merchant_id, idempotency_keys.c.key == key
            )
        ).first()


def test_idempotent_replay_and_reuse(client, auth, dispatch, merchant, engine, vault):
    key = uuid.uuid4().hex
    first = create(client, auth, key=key)
    again = create(client, auth, key=key)
    assert first.status_code == again.status_code == 202
    assert again.json == first.json and again.headers["idempotent-replayed"] == "true"
    assert _intent_count(engine, merchant["merchant_id"]) == 1

    assert_problem(
        create(client, auth, card_body(amount=2000), key=key), 422, "idempotency_key_reused"
    )
    assert _key_row(engine, merchant["merchant_id"], key).response_status == 202
    # Keys are per merchant: the same key elsewhere is a fresh request.
    other = get_tokens(client, new_merchant(engine, vault))["access_token"]
    theirs = create(client, {"Authorization": f"Bearer {other}"}, key=key)
    assert theirs.status_code == 202 and "idempotent-replayed" not in theirs.headers
    assert theirs.json["id"] != first.json["id"]


def test_idempotency_key_in_flight_gets_409(client, auth, merchant, engine):
    from sqlalchemy import func, select

    key = uuid.uuid4().hex
    lock = func.pg_advisory_xact_lock(func.hashtextextended(f"{merchant['merchant_id']}:{key}", 0))
    with engine.connect() as conn, conn.begin():
        conn.execute(select(lock))  # as the first request holds it while in flight
        assert_problem(create(client, auth, key=key), 409, "idempotency_key_in_use")
    assert _key_row(engine, merchant["merchant_id"], key) is None
    # the first one is gone (its transaction ended): the key is free again
    assert create(client, auth, key=key).status_code == 202


def test_idempotency_errors_stored_but_validation_not(client, auth, merchant, engine):
    key = uuid.uuid4().hex
    resp = create(client, auth, card_body(amount=1.5), key=key)
    assert_problem(resp, 400, "parameter_invalid_integer", "amount")
    assert _key_row(engine, merchant["merchant_id"], key) is None
    assert create(client, auth, key=key).status_code == 202

    intent = create(client, auth).json
    path = f"/v1/payment_intents/{intent['id']}/capture"
    headers = {**auth, "Idempotency-Key": key + "-capture"}
    first = client.simulate_post(path, json={}, headers=headers)
    assert_problem(first, 400, "payment_intent_unexpected_state")
    replay = client.simulate_post(path, json={}, headers=headers)
    assert replay.status_code == 400 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json == first.json

    too_long = {**auth, "Idempotency-Key": "k" * 256}
    resp = client.simulate_post("/v1/payment_intents", json=card_body(), headers=too_long)
    assert_problem(resp, 400, param="Idempotency-Key")


def test_unexpected_error_is_500_and_frees_the_key(settings, engine, keys, vault, merchant):
    class BrokenVault:
        def fingerprint(self, value):
            return vault.fingerprint(value)

        def encrypt(self, *a, **kw):
            raise RuntimeError("HSM on fire")

    app = create_app(
        settings, engine=engine, dispatch=RecordingDispatch(), keys=keys, vault=BrokenVault()
    )
    client = Client(app, f.new_ip())
    auth = {"Authorization": f"Bearer {get_tokens(client, merchant)['access_token']}"}
    key = uuid.uuid4().hex
    body = assert_problem(create(client, auth, key=key), 500, "internal_error")
    assert "HSM" not in body["detail"]
    assert _key_row(engine, merchant["merchant_id"], key) is None


# --- request shape -----------------------------------------------------------


def test_body_errors(client, auth):
    post = client.simulate_post
    resp = post(
        "/v1/payment_intents", body="{nope", headers={**auth, "Content-Type": "application/json"}
    )
    assert_problem(resp, 400, "invalid_json")
    resp = post(
        "/v1/payment_intents",
        body='{"amount": 1, "amount": 2}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert_problem(resp, 400, "invalid_json")
    resp = post(
        "/v1/payment_intents", body="amount=1", headers={**auth, "Content-Type": "text/plain"}
    )
    assert_problem(resp, 415, "unsupported_media_type")
    resp = create(client, auth, card_body(colour="red"))
    assert_problem(resp, 400, "parameter_unknown", "colour")
    resp = create(client, auth, card_body(amount=10.5))
    assert_problem(resp, 400, "parameter_invalid_integer", "amount")
    # JSON Schema's integer: 10.0 is the integer 10 (read exactly, never as a float).
    assert create(client, auth, card_body(amount=10.0)).json["amount"] == 10
    big = json.dumps(card_body(description="x" * 70_000))
    resp = post(
        "/v1/payment_intents", body=big, headers={**auth, "Content-Type": "application/json"}
    )
    assert_problem(resp, 413, "request_too_large")


def test_chunked_body_over_limit(client, auth):
    big = json.dumps(card_body(description="x" * 70_000)).encode()
    resp = client.simulate_post(
        "/v1/payment_intents",
        body=big,
        headers={
            **auth,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        extras={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert_problem(resp, 413, "request_too_large")
    small = json.dumps(card_body()).encode()
    resp = client.simulate_post(
        "/v1/payment_intents",
        body=small,
        headers={**auth, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        extras={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert resp.status_code == 202, resp.text


def test_routing_errors_and_request_id(client, auth):
    resp = client.simulate_get("/v1/nothing-here", headers={"X-Request-Id": "abc-123"})
    assert_problem(resp, 404)
    assert resp.headers["x-request-id"] == "abc-123"
    resp = client.simulate_delete("/v1/payment_intents", headers=auth)
    assert_problem(resp, 405, "method_not_allowed")
    resp = client.simulate_get("/health", headers={"X-Request-Id": "bad id\n" + "x" * 80})
    assert resp.headers["x-request-id"].startswith("req_")


def test_ops_endpoints(client, auth, engine, merchant):
    assert client.simulate_get("/health").json == {"status": "ok"}
    ready = client.simulate_get("/ready")
    assert ready.status_code == 200, ready.text
    spec = client.simulate_get("/openapi.json").json
    assert spec["openapi"].startswith("3.1") and "/v1/payment_intents" in spec["paths"]
    assert "Problem" in spec["components"]["schemas"]
    # Metrics are on the operator port (intake/metrics.py), never the merchant's.
    assert_problem(client.simulate_get("/metrics"), 404)
    assert "/metrics" not in spec["paths"]


def test_ready_reports_broken_redis(settings, engine, keys, vault):
    class DeadRedis:
        def ping(self):
            raise ConnectionError("down")

        def register_script(self, script):  # the rate limiter's (it fails open)
            return lambda **kw: self.ping()

    app = create_app(
        settings,
        engine=engine,
        dispatch=RecordingDispatch(),
        keys=keys,
        vault=vault,
        redis_client=DeadRedis(),
    )
    resp = falcon.testing.TestClient(app).simulate_get("/ready")
    body = assert_problem(resp, 503, "not_ready")
    assert "redis" in body["detail"]


@pytest.mark.broker
def test_ready_checks_rabbitmq_when_it_is_the_broker(settings, engine, keys, vault):
    from tests.support import rabbitmq

    def ready(broker_url):
        app = create_app(
            settings.replace(broker_url=broker_url),
            engine=engine,
            dispatch=RecordingDispatch(),
            keys=keys,
            vault=vault,
        )
        return falcon.testing.TestClient(app).simulate_get("/ready")

    up = ready(os.environ.get("BROKER_URL") or rabbitmq.LOCAL)
    assert up.status_code == 200, up.text
    assert up.json["checks"] == {"postgres": "ok", "redis": "ok", "broker": "ok"}
    down = ready(f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    assert "broker" in assert_problem(down, 503, "not_ready")["detail"]
    # Redis as the broker: pinged as Redis, and no second check.
    assert ready("").json["checks"] == {"postgres": "ok", "redis": "ok"}


def test_balance_reads_ledger_accounts(client, auth, merchant, engine):
    # Real transfers (never hand-set balances: the books must still reconcile).
    from shared.domain import ledger as L
    from shared.services import ledger

    mid = merchant["merchant_id"]
    codes = {
        "src": L.account_code("card_clearing", "EUR"),
        "pending": L.account_code("merchant_pending", "EUR", mid),
        "available": L.account_code("merchant_available", "EUR", mid),
    }
    with engine.begin() as conn:
        ids = ledger.account_ids(bound(conn), {c: ("EUR", False) for c in codes.values()})
        src, pend, avail = (ids[codes[k]] for k in ("src", "pending", "available"))
        ledger.record(
            bound(conn),
            [
                L.Transfer(L.POSTED, src, pend, 1100, "EUR", "capture"),
                L.Transfer(L.POSTED, pend, avail, 300, "EUR", "settlement"),
                L.Transfer(L.PENDING, src, pend, 50, "EUR", "authorization"),
            ],
        )
    body = client.simulate_get("/v1/balance", headers=auth).json
    assert body["pending"] == [{"currency": "EUR", "amount": 800, "held": 50}]
    assert body["available"] == [{"currency": "EUR", "amount": 300}]


def test_idempotency_race_runs_the_effect_once(client, auth, merchant, engine):
    key = uuid.uuid4().hex
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: create(client, auth, key=key), range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {202, 409}, statuses
    assert len({r.json["id"] for r in responses if r.status_code == 202}) == 1
    assert _intent_count(engine, merchant["merchant_id"]) == 1


def _intent_count(engine, merchant_id: str) -> int:
    from sqlalchemy import func

    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(payment_intents.c.merchant_id == merchant_id)
        ).scalar_one()


def test_expired_keys_are_absent_and_pruned(client, auth, merchant, engine, settings):
    key = uuid.uuid4().hex
    first = create(client, auth, key=key).json
    old = datetime.now(UTC) - timedelta(hours=settings.idempotency_retention_h + 1)
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.merchant_id == merchant["merchant_id"])
            .values(created_at=old)
        )
    # Past retention the key is new again, even with another body.
    again = create(client, auth, card_body(amount=555), key=key)
    assert again.status_code == 202 and again.json["id"] != first["id"]
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.merchant_id == merchant["merchant_id"])
            .values(created_at=old)
        )
        assert (
            retention.prune_idempotency_keys(bound(conn), settings.idempotency_retention_h, 10**6)
            >= 1
        )
    assert _key_row(engine, merchant["merchant_id"], key) is None
