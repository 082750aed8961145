"""Metrics add up across processes: 2 gunicorn workers, a prefork worker's children."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import factories as f
from tests.conftest import free_port
from tests.support import processes

N = 12
AMOUNT = 5_000_000  # 5 EURC (exponent 6): a currency no other test uses


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= set(lbl))


def workers_total(name: str, **labels) -> float:
    """Sum over every live Celery worker of the session: any of them may run a task."""
    return sum(
        total(scrape(f"http://127.0.0.1:{w.metrics_port}/metrics"), name, **labels)
        for w in processes.WORKERS
    )


def eventually(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def api(database, redis_client, worker):
    port = free_port()
    with processes.gunicorn(port, workers=2) as p:
        yield p, f"http://127.0.0.1:{port}"


def test_counters_add_up_across_processes(api, make_merchant, engine):
    proc, base = api
    auth = {"Authorization": f"Bearer {f.access_token(base, make_merchant())}"}
    before_api = scrape(f"{base}/metrics")
    before = {
        "eurc_posted": workers_total("clearhouse_ledger_volume_total", currency="EURC"),
        "fraud": workers_total("clearhouse_fraud_score_count"),
        "final": workers_total("clearhouse_intent_accept_to_final_seconds_count"),
    }

    for _ in range(40):  # new connections: both gunicorn workers answer some
        assert requests.get(f"{base}/health", timeout=5).status_code == 200
    rng = random.Random()
    ids = []
    for _ in range(N):
        body = f.card_body(f.random_visa(rng), AMOUNT, currency="EURC", priority="instant")
        r = requests.post(f"{base}/v1/payment_intents", json=body, headers=auth, timeout=10)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    rows = f.wait_until_final(engine, ids)
    assert {r.status for r in rows.values()} == {"succeeded"}

    after_api = scrape(f"{base}/metrics")
    health = dict(method="GET", route="/health", status="200")
    assert (
        total(after_api, "clearhouse_http_requests_total", **health)
        - total(before_api, "clearhouse_http_requests_total", **health)
        == 40
    )
    created = dict(currency="EURC", priority="instant")
    assert (
        total(after_api, "clearhouse_intents_created_total", **created)
        - total(before_api, "clearhouse_intents_created_total", **created)
        == N
    )
    route = dict(method="POST", route="/v1/payment_intents")
    assert total(after_api, "clearhouse_http_request_duration_seconds_count", **route) >= N
    # Both gunicorn workers wrote samples: the totals above are sums of files.
    pids = {p.name.rsplit("_", 1)[-1] for p in Path(proc.metrics_dir, "api").glob("counter_*")}
    assert len(pids) >= 2, pids
    assert total(after_api, "clearhouse_queue_depth", queue="limits") >= 0
    assert ("clearhouse_queue_depth", (("queue", "settlement.instant"),)) in after_api

    # Worker side: every stage ran, in either prefork child, and adds up.
    for step in ("limits", "fraud", "fees", "authorize", "settle_instant"):
        task = f"clearhouse.{step}"
        assert workers_total("clearhouse_task_runtime_seconds_count", task=task) > 0, task
        assert workers_total("clearhouse_task_queue_wait_seconds_count", task=task) > 0, task
    assert workers_total("clearhouse_fraud_score_count") - before["fraud"] >= N
    assert workers_total("clearhouse_intent_accept_to_final_seconds_count") - before["final"] >= N
    assert workers_total("clearhouse_intent_transitions_total", status="succeeded") >= N
    # Each approved instant intent moves its amount three times: the hold,
    # its capture, and fee + net settlement (posted); in major units.
    expected = 3 * N * AMOUNT / 10**6

    def volume_adds_up():
        moved = workers_total("clearhouse_ledger_volume_total", currency="EURC")
        assert moved - before["eurc_posted"] == pytest.approx(expected)

    eventually(volume_adds_up)


def test_worker_metrics_port_serves_multiprocess_registry(worker, make_merchant, submit, engine):
    # A task of its own first: a worker that has run none yet has nothing to serve,
    # and which tests ran before this one depends on the (random) order.
    f.wait_until_final(engine, [submit(make_merchant()["merchant_id"], f.card_body())])
    text = requests.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).text
    assert "clearhouse_task_runtime_seconds" in text


def test_observations_wait_for_the_commit(engine):
    from sqlalchemy import text

    from shared.observability import metrics

    seen = []
    with engine.connect() as conn:
        with conn.begin():
            metrics.on_commit(conn, lambda: seen.append("committed"))
            conn.execute(text("SELECT 1"))
        tx = conn.begin()
        metrics.on_commit(conn, lambda: seen.append("rolled back"))
        tx.rollback()
        with conn.begin():
            conn.execute(text("SELECT 1"))  # nothing left over from the rollback
    assert seen == ["committed"]


def test_queue_depth_counts_every_priority_list_under_the_key_prefix(redis_client):
    from intake.metrics import QueueDepth

    prefix = f"qd-{random.randrange(10**9)}:"
    redis_client.rpush(f"{prefix}fraud", "a", "b")
    redis_client.rpush(f"{prefix}fraud\x06\x169", "c")  # kombu's priority-9 list
    try:
        (family,) = QueueDepth(redis_client, ["fraud", "fees"], prefix).collect()
        depth = {s.labels["queue"]: s.value for s in family.samples}
        assert depth == {"fraud": 3, "fees": 0}
    finally:
        redis_client.delete(f"{prefix}fraud", f"{prefix}fraud\x06\x169")
