"""Rate limits per API client and per source IP, on a real Redis, through the falcon app.

Each test builds the app with limits of its own and sends from addresses of its
own (``f.new_ip()``), and every merchant is new: no two tests share a key.
Rates are tiny (one request per several seconds) so a slow machine refills no
bucket in the middle of a test; the burst is what is counted.
"""

from __future__ import annotations

import logging
import signal
import time

import falcon.testing
import prometheus_client
import pytest

from intake.app import create_app, redis_client_for
from shared.security.signing import SigningKeys
from tests import factories as f
from tests.support import waiting
from tests.support.services import PrivateRedis

pytestmark = pytest.mark.integration

HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
# Limits no test reaches, so that only the one a test sets applies.
ROOMY = dict(
    rate_limit_per_client=1000.0,
    rate_limit_per_ip=1000.0,
    rate_limit_token_per_client=1000.0,
    rate_limit_token_per_ip=1000.0,
)


def burst_of(n: int) -> dict:
    """A rate of one request per 10 s with a burst of ``n`` (with rate_limit_burst_s)."""
    return {"rate": 0.1, "burst_s": n * 10}


@pytest.fixture
def app(settings, engine, vault):
    """Factory: the API with these settings changed (and another Redis, if given)."""

    def make(redis_client=None, **changes):
        return create_app(
            settings.replace(**changes),
            engine=engine,
            dispatch=lambda *a, **k: None,
            keys=SigningKeys.from_settings(settings),
            vault=vault,
            redis_client=redis_client,
        )

    return make


def token(client, merchant, ip) -> str:
    body = {
        "grant_type": "client_credentials",
        "client_id": merchant["client_id"],
        "client_secret": merchant["client_secret"],
    }
    r = client.simulate_post("/v1/oauth/token", json=body, remote_addr=ip)
    assert r.status_code == 200, r.text
    return r.json["access_token"]


def balance(client, tok, ip):
    return client.simulate_get(
        "/v1/balance", headers={"Authorization": f"Bearer {tok}"}, remote_addr=ip
    )


def assert_limited(resp, limit: int):
    assert resp.status_code == 429, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json["code"] == "rate_limited" and resp.json["status"] == 429
    assert int(resp.headers["retry-after"]) >= 1
    assert resp.headers["ratelimit-limit"] == str(limit)
    assert resp.headers["ratelimit-remaining"] == "0"


def test_a_burst_over_the_client_limit_is_429_and_every_response_carries_the_headers(
    app, make_merchant, redis_client, settings
):
    b = burst_of(5)
    client = falcon.testing.TestClient(
        app(**{**ROOMY, "rate_limit_per_client": b["rate"], "rate_limit_burst_s": b["burst_s"]})
    )
    ip, merchant = f.new_ip(), make_merchant()
    tok = token(client, merchant, ip)
    auth = {"Authorization": f"Bearer {tok}"}
    answers = [
        balance(client, tok, ip),
        client.simulate_get("/v1/payment_intents/pi_nosuch", headers=auth, remote_addr=ip),
        client.simulate_post(
            "/v1/payment_intents", json={"amount": -1}, headers=auth, remote_addr=ip
        ),
        balance(client, tok, ip),
        balance(client, tok, ip),
    ]
    assert [r.status_code for r in answers] == [200, 404, 400, 200, 200]
    for r, left in zip(answers, [4, 3, 2, 1, 0], strict=True):
        assert all(h in r.headers for h in HEADERS), r.headers
        assert r.headers["ratelimit-limit"] == "5"
        assert r.headers["ratelimit-remaining"] == str(left)
        assert int(r.headers["ratelimit-reset"]) >= 1
    # The key (under the prefix) expires when its bucket is full again: 5 × 10 s.
    left_ms = redis_client.pttl(f"{settings.redis_key_prefix}rl:client:{merchant['client_id']}")
    assert 40_000 < left_ms <= 50_001
    over = balance(client, tok, ip)
    assert_limited(over, 5)
    assert over.json["request_id"] == over.headers["x-request-id"]
    # Refused requests cost nothing: still refused, still at 0, never negative.
    assert_limited(balance(client, tok, ip), 5)
    # Errors raised before the limiter's turn (a bad token, no route) carry the
    # headers too, of the IP's limit.
    for r in (
        client.simulate_get("/v1/balance", headers={"Authorization": "Bearer x"}, remote_addr=ip),
        client.simulate_get("/nowhere", remote_addr=ip),
    ):
        assert r.status_code in (401, 404)
        assert r.headers["ratelimit-limit"] == str(1000 * b["burst_s"])


def test_after_retry_after_the_client_passes_again(app, make_merchant):
    # One per second, a burst of one: the second request within the second is refused.
    client = falcon.testing.TestClient(
        app(**{**ROOMY, "rate_limit_per_client": 1.0, "rate_limit_burst_s": 1.0})
    )
    ip = f.new_ip()
    tok = token(client, make_merchant(), ip)
    over = waiting.until(
        lambda: (r := balance(client, tok, ip)).status_code == 429 and r, timeout=10
    )
    assert_limited(over, 1)
    wait = int(over.headers["retry-after"])
    assert wait == 1
    started = time.monotonic()
    waiting.until(lambda: balance(client, tok, ip).status_code == 200, timeout=wait + 2)
    assert time.monotonic() - started <= wait + 1


def test_two_clients_from_one_ip_are_limited_each_on_its_own(app, make_merchant):
    b = burst_of(3)
    client = falcon.testing.TestClient(
        app(**{**ROOMY, "rate_limit_per_client": b["rate"], "rate_limit_burst_s": b["burst_s"]})
    )
    ip = f.new_ip()
    first, second = token(client, make_merchant(), ip), token(client, make_merchant(), ip)
    assert [balance(client, first, ip).status_code for _ in range(3)] == [200] * 3
    assert_limited(balance(client, first, ip), 3)
    assert [balance(client, second, ip).status_code for _ in range(3)] == [200] * 3
    assert_limited(balance(client, second, ip), 3)


def test_one_client_from_two_ips_is_limited_per_ip(app, make_merchant):
    b = burst_of(3)
    client = falcon.testing.TestClient(
        app(**{**ROOMY, "rate_limit_per_ip": b["rate"], "rate_limit_burst_s": b["burst_s"]})
    )
    here, there = f.new_ip(), f.new_ip()
    # The token request is the OAuth endpoint's, counted under its own limits.
    tok = token(client, make_merchant(), here)
    assert [balance(client, tok, here).status_code for _ in range(3)] == [200] * 3
    assert_limited(balance(client, tok, here), 3)
    # The same IP is over for every client, and for requests with no token at all.
    assert_limited(client.simulate_get("/health", remote_addr=here), 3)
    assert_limited(client.simulate_get("/v1/balance", remote_addr=here), 3)
    ok = balance(client, tok, there)
    assert ok.status_code == 200 and ok.headers["ratelimit-remaining"] == "2"


def test_the_tighter_limit_is_reported(app, make_merchant):
    tok = token(falcon.testing.TestClient(app(**ROOMY)), make_merchant(), f.new_ip())
    limits = {"rate_limit_per_client": 2.0, "rate_limit_per_ip": 5.0, "rate_limit_burst_s": 2.0}
    client = falcon.testing.TestClient(app(**{**ROOMY, **limits}))
    r = balance(client, tok, f.new_ip())
    assert r.headers["ratelimit-limit"] == "4"  # the client's, not the IP's 10
    r = client.simulate_get("/health", remote_addr=f.new_ip())
    assert r.headers["ratelimit-limit"] == "10"  # no client: the IP's


def test_the_token_endpoint_has_stricter_limits_per_ip_and_per_client_id(
    app, make_merchant, settings
):
    b = burst_of(3)
    strict = {
        **ROOMY,
        "rate_limit_token_per_ip": b["rate"],
        "rate_limit_token_per_client": b["rate"],
        "rate_limit_burst_s": b["burst_s"],
    }
    client = falcon.testing.TestClient(app(**strict))
    ip, merchant = f.new_ip(), make_merchant()
    for _ in range(3):
        token(client, merchant, ip)
    body = {
        "grant_type": "client_credentials",
        "client_id": merchant["client_id"],
        "client_secret": merchant["client_secret"],
    }
    assert_limited(client.simulate_post("/v1/oauth/token", json=body, remote_addr=ip), 3)
    # Per client_id: from a fresh address the same client is still over.
    assert_limited(client.simulate_post("/v1/oauth/token", json=body, remote_addr=f.new_ip()), 3)
    # Per IP: another client from the first address is over too.
    other = {**body, "client_id": make_merchant()["client_id"]}
    assert_limited(client.simulate_post("/v1/oauth/token", json=other, remote_addr=ip), 3)
    # Revocation shares the OAuth endpoints' limits.
    revoke = client.simulate_post("/v1/oauth/revoke", json={"token": "rt_x"}, remote_addr=ip)
    assert_limited(revoke, 3)
    # The rest of the API is not: the address still reads its balance.
    assert balance(client, token(client, make_merchant(), f.new_ip()), ip).status_code == 200

    # By default the token endpoint is the stricter one, in the headers too.
    default, ip, fresh = falcon.testing.TestClient(app()), f.new_ip(), make_merchant()
    tok = token(default, fresh, ip)
    r = default.simulate_post(
        "/v1/oauth/token", json={**body, "client_id": fresh["client_id"]}, remote_addr=ip
    )
    token_limit = int(r.headers["ratelimit-limit"])
    api_limit = int(balance(default, tok, ip).headers["ratelimit-limit"])
    assert token_limit < api_limit
    assert settings.rate_limit_token_per_ip < settings.rate_limit_per_ip
    assert settings.rate_limit_token_per_client < settings.rate_limit_per_client


def _unavailable() -> float:
    name = "clearhouse_rate_limiter_unavailable_total"
    return prometheus_client.REGISTRY.get_sample_value(name, {"check": "rate_limit"}) or 0.0


def test_with_redis_away_requests_pass_counted_and_logged_once(app, make_merchant, caplog):
    server = PrivateRedis()
    server.start()
    try:
        conn = redis_client_for(server.url)
        b = burst_of(3)
        client = falcon.testing.TestClient(
            app(
                redis_client=conn,
                **{**ROOMY, "rate_limit_per_ip": b["rate"], "rate_limit_burst_s": b["burst_s"]},
            )
        )
        ip = f.new_ip()
        tok = token(client, make_merchant(), ip)  # the OAuth endpoint's limits
        assert balance(client, tok, ip).headers["ratelimit-remaining"] == "2"
        # Hung, the worst kind of away: every command would wait out its 1 s timeout.
        server.proc.send_signal(signal.SIGSTOP)
        before = _unavailable()
        caplog.set_level(logging.WARNING, logger="clearhouse.ratelimit")
        started = time.monotonic()
        answers = [balance(client, tok, ip) for _ in range(20)]
        took = time.monotonic() - started
        assert [r.status_code for r in answers] == [200] * 20  # over the burst: let through
        assert not any("ratelimit-limit" in r.headers for r in answers)
        assert _unavailable() - before == 20
        down = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(down) == 1, [r.getMessage() for r in caplog.records]
        # Not 20 timeouts: after a failure the breaker skips Redis for a second.
        assert took < 8, took

        server.proc.send_signal(signal.SIGCONT)
        waiting.until(lambda: "ratelimit-limit" in balance(client, tok, ip).headers, timeout=10)
        back = [r for r in caplog.records if "available again" in r.getMessage()]
        assert len(back) == 1
        # And killed: refused at once, let through just the same.
        server.kill()
        assert balance(client, tok, ip).status_code == 200
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.stop()


def test_a_request_refused_by_its_ip_costs_its_client_nothing(app, make_merchant):
    # Bursts (0.1/s and 0.15/s, 20 s each): the IP's 2, the client's 3.
    limits = {"rate_limit_per_ip": 0.1, "rate_limit_per_client": 0.15, "rate_limit_burst_s": 20}
    client = falcon.testing.TestClient(app(**{**ROOMY, **limits}))
    here, there = f.new_ip(), f.new_ip()
    tok = token(client, make_merchant(), here)
    assert [balance(client, tok, here).status_code for _ in range(2)] == [200, 200]
    for _ in range(3):
        assert_limited(balance(client, tok, here), 2)
    # The client has one request left: the refused ones were not charged to it.
    last = balance(client, tok, there)
    assert last.status_code == 200 and last.headers["ratelimit-remaining"] == "0"
    assert_limited(balance(client, tok, there), 3)
