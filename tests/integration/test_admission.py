"""Admission control: past MAX_BACKLOG creates get 503 overloaded and change nothing.

The module owns a database (a scratch one): its backlog is the count of every
``processing`` intent there, so no other test's intents may sit in it. The API
runs in-process on that database with MAX_BACKLOG 3, and nothing consumes what
it accepts until the test starts a relay and a real worker of its own (on a
Redis key prefix of its own, so the layer's worker never sees its messages).
A fresh app samples the backlog at its first create: each phase builds one.
"""

from __future__ import annotations

import logging

import prometheus_client
import pytest
from sqlalchemy import func, select

from intake.app import create_app
from shared.db.tables import idempotency_keys, payment_intents
from shared.security.signing import SigningKeys
from tests import factories as f
from tests.conftest import TEST_ENV
from tests.support import processes, waiting
from tests.support.apiclient import OwnAddressClient, bearer
from tests.support.scratchdb import scratch_database

pytestmark = pytest.mark.integration

BOUND = 3
ROUTE = {"route": "/v1/payment_intents"}


@pytest.fixture(scope="module")
def scratch(database):
    with scratch_database("clearhouse_admission") as (url, eng):
        yield url, eng


@pytest.fixture(scope="module")
def engine(scratch):
    return scratch[1]


@pytest.fixture
def api(settings, engine, vault):
    """Factory: a fresh in-process API on the scratch database (MAX_BACKLOG 3 unless told)."""

    def make(max_backlog: int = BOUND) -> OwnAddressClient:
        app = create_app(
            settings.replace(max_backlog=max_backlog),
            engine=engine,
            dispatch=lambda *a, **k: None,
            keys=SigningKeys.from_settings(settings),
            vault=vault,
        )
        return OwnAddressClient(app)

    return make


def create(client, auth, key: str, body: dict):
    return client.simulate_post(
        "/v1/payment_intents", json=body, headers={**auth, "Idempotency-Key": key}
    )


def processing(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(payment_intents.c.status == "processing")
        ).scalar_one()


def intents_of(engine, merchant_id: str) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(payment_intents.c.id).where(payment_intents.c.merchant_id == merchant_id)
        )
        return {r.id for r in rows}


def stored_key(engine, merchant_id: str, key: str):
    with engine.connect() as conn:
        return conn.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.merchant_id == merchant_id, idempotency_keys.c.key == key
            )
        ).first()


def metric(name: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, ROUTE) or 0.0


def test_past_the_bound_creates_are_refused_until_the_backlog_drains(
    api, engine, scratch, make_merchant, caplog
):
    caplog.set_level(logging.WARNING, logger="intake.admission")
    merchant = make_merchant()
    mid = merchant["merchant_id"]
    bodies = {key: f.card_body(f.new_card()) for key in ("a", "b", "replayed", "refused")}

    # Under the bound: three creates fill the backlog to it (nothing consumes them).
    first = api()
    auth = bearer(first, merchant)
    accepted = {}
    for key in ("a", "b", "replayed"):
        resp = create(first, auth, key, bodies[key])
        assert resp.status_code == 202, resp.text
        accepted[key] = resp.json["id"]
    assert processing(engine) == BOUND

    # At the bound: a create is refused, with when to come back, and leaves nothing.
    shed_before = metric("clearhouse_intake_shed_total")
    full = api()
    resp = create(full, auth, "refused", bodies["refused"])
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json
    assert problem["code"] == "overloaded" and problem["status"] == 503
    assert "pipeline is behind" in problem["detail"] and "behind" in problem["title"]
    assert resp.headers["retry-after"] == "1" and problem["retry_after_s"] == 1
    assert problem["request_id"] == resp.headers["x-request-id"]
    assert intents_of(engine, mid) == set(accepted.values())
    assert stored_key(engine, mid, "refused") is None
    assert metric("clearhouse_intake_shed_total") == shed_before + 1
    assert metric("clearhouse_intake_backlog") == BOUND

    # A replay of a completed key costs the pipeline nothing: still answered.
    replay = create(full, auth, "replayed", bodies["replayed"])
    assert replay.status_code == 202, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json["id"] == accepted["replayed"]
    # Reads go on.
    read = full.simulate_get(f"/v1/payment_intents/{accepted['a']}", headers=auth)
    assert read.status_code == 200 and read.json["status"] == "processing"
    listed = full.simulate_get("/v1/payment_intents", headers=auth)
    assert listed.status_code == 200 and len(listed.json["data"]) == BOUND
    assert metric("clearhouse_intake_shed_total") == shed_before + 1

    # MAX_BACKLOG 0: no bound at all.
    unbounded = api(max_backlog=0)
    resp = create(unbounded, auth, "unbounded", f.card_body(f.new_card()))
    assert resp.status_code == 202, resp.text
    accepted["unbounded"] = resp.json["id"]

    # A relay and a worker of the test's own drain the backlog; the refused key goes through.
    env = {
        "DATABASE_URL": scratch[0],
        "REDIS_KEY_PREFIX": TEST_ENV["REDIS_KEY_PREFIX"] + "admission:",
    }
    with (
        processes.relay(env),
        processes.celery_worker("admission", pool="solo", concurrency=1, env=env),
    ):
        waiting.until(lambda: processing(engine) == 0, timeout=60, what="the backlog to drain")
        retried = waiting.until(
            lambda: (
                (r := create(full, auth, "refused", bodies["refused"])).status_code == 202 and r
            ),
            timeout=10,
            what="the refused create to be accepted",
        )
    assert "idempotent-replayed" not in retried.headers
    assert intents_of(engine, mid) == {*accepted.values(), retried.json["id"]}
    assert stored_key(engine, mid, "refused").response_body["id"] == retried.json["id"]
    again = create(full, auth, "refused", bodies["refused"])
    assert again.status_code == 202 and again.json["id"] == retried.json["id"]
    # One line when the process started refusing, one when it stopped: not one per request.
    lines = [r.getMessage() for r in caplog.records if r.name == "intake.admission"]
    assert lines == [
        f"admission: backlog {BOUND} at MAX_BACKLOG {BOUND}, refusing creates (503)",
        f"admission: backlog 0 under MAX_BACKLOG {BOUND}, creates accepted again",
    ]
