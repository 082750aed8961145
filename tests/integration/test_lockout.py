"""Client lockout at the OAuth endpoints, on a real Redis, through the falcon app.

Each test has its own merchants and client ids; the OAuth rate limits are set
out of reach so that only the lockout answers.
"""

from __future__ import annotations

import base64
import secrets

import falcon.testing
import prometheus_client
import pytest

from intake.app import create_app, redis_client_for
from shared.security.signing import SigningKeys
from tests import factories as f
from tests.support import waiting
from tests.support.services import PrivateRedis

pytestmark = pytest.mark.integration

LOCK_S = 2


@pytest.fixture
def client(settings, engine, vault):
    app = create_app(
        settings.replace(
            rate_limit_token_per_client=1000.0,
            rate_limit_token_per_ip=1000.0,
            auth_lockout_s=LOCK_S,
        ),
        engine=engine,
        dispatch=lambda *a, **k: None,
        keys=SigningKeys.from_settings(settings),
        vault=vault,
    )
    return falcon.testing.TestClient(app)


def grant(client, client_id, secret, **extra):
    body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return client.simulate_post("/v1/oauth/token", json={**body, **extra}, remote_addr=f.new_ip())


def fail(client, client_id, times: int) -> None:
    for _ in range(times):
        r = grant(client, client_id, "cs_wrong")
        assert r.status_code == 401 and r.json["code"] == "invalid_client", r.text


def assert_locked(resp, lock_s: int = LOCK_S):
    assert resp.status_code == 429, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json["code"] == "client_locked"
    assert 1 <= int(resp.headers["retry-after"]) <= lock_s
    return resp.json


def test_ten_failures_lock_the_client_even_with_the_right_secret_then_it_unlocks(
    client, make_merchant
):
    m = make_merchant()
    fail(client, m["client_id"], 9)
    ok = grant(client, m["client_id"], m["client_secret"])
    assert ok.status_code == 200  # nine are not enough
    refresh = ok.json["refresh_token"]
    fail(client, m["client_id"], 1)
    assert_locked(grant(client, m["client_id"], m["client_secret"]))
    # Both grants, and the revocation endpoint's client authentication.
    assert_locked(
        client.simulate_post(
            "/v1/oauth/token",
            json={
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": m["client_id"],
                "client_secret": m["client_secret"],
            },
        )
    )
    basic = base64.b64encode(f"{m['client_id']}:{m['client_secret']}".encode()).decode()
    assert_locked(
        client.simulate_post(
            "/v1/oauth/revoke", json={"token": refresh}, headers={"Authorization": f"Basic {basic}"}
        )
    )
    # Another client is not locked.
    other = make_merchant()
    assert grant(client, other["client_id"], other["client_secret"]).status_code == 200
    # After AUTH_LOCKOUT_S the right secret works again, and the count starts over.
    waiting.until(
        lambda: grant(client, m["client_id"], m["client_secret"]).status_code == 200,
        timeout=LOCK_S + 3,
    )
    fail(client, m["client_id"], 9)
    assert grant(client, m["client_id"], m["client_secret"]).status_code == 200


def test_failures_at_the_revocation_endpoint_count_too(client, make_merchant):
    m = make_merchant()
    for _ in range(10):
        r = client.simulate_post(
            "/v1/oauth/revoke",
            json={"token": "rt_x", "client_id": m["client_id"], "client_secret": "cs_wrong"},
        )
        assert r.status_code == 401, r.text
    assert_locked(grant(client, m["client_id"], m["client_secret"]))


def test_an_unknown_id_is_locked_alike_and_locks_no_one_else(client, make_merchant):
    real = make_merchant()
    unknown = "ci_" + secrets.token_hex(12)
    fail(client, unknown, 10)
    body = assert_locked(grant(client, unknown, "cs_wrong"))
    assert grant(client, real["client_id"], real["client_secret"]).status_code == 200
    # The same answer as for a real client: the lock does not tell which ids exist.
    fail(client, real["client_id"], 10)
    real_body = assert_locked(grant(client, real["client_id"], real["client_secret"]))
    assert {k for k in body if k != "request_id"} == {k for k in real_body if k != "request_id"}
    assert body["detail"].split(";")[0] == real_body["detail"].split(";")[0]


def test_an_operator_lifts_a_lock_by_deleting_its_key(
    client, make_merchant, redis_client, settings
):
    m = make_merchant()
    fail(client, m["client_id"], 10)
    assert_locked(grant(client, m["client_id"], m["client_secret"]))
    key = settings.redis_key_prefix + "lockout:lock:" + m["client_id"]
    assert redis_client.delete(key) == 1
    assert grant(client, m["client_id"], m["client_secret"]).status_code == 200


def test_with_redis_away_the_lockout_fails_open(settings, engine, vault, make_merchant):
    server = PrivateRedis()
    server.start()
    try:
        conn = redis_client_for(server.url)
        app = create_app(
            settings.replace(auth_lockout_failures=2, auth_lockout_s=600),
            engine=engine,
            dispatch=lambda *a, **k: None,
            keys=SigningKeys.from_settings(settings),
            vault=vault,
            redis_client=conn,
        )
        client = falcon.testing.TestClient(app)
        m = make_merchant()
        fail(client, m["client_id"], 2)
        assert_locked(grant(client, m["client_id"], m["client_secret"]), 600)
        server.kill()
        before = _skipped()
        assert grant(client, m["client_id"], m["client_secret"]).status_code == 200
        fail(client, m["client_id"], 3)  # uncounted, and still answered 401
        # Each request skips its lock check, each failure its count too: 1 + 3 × 2.
        assert _skipped() - before == 7
    finally:
        server.stop()


def _skipped() -> float:
    name = "clearhouse_rate_limiter_unavailable_total"
    return prometheus_client.REGISTRY.get_sample_value(name, {"check": "lockout"}) or 0.0
