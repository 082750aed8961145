"""Metrics add up across processes: 2 gunicorn workers, a prefork worker's children."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import factories as f
from tests.conftest import BROKER_IS_AMQP, TEST_ENV, free_port, queue_key
from tests.support import processes
from tests.support.waiting import drain
from workers.topology import QUEUES
from workers.topology import STEPS as TOPOLOGY

N = 12
PRIORITY_9 = "\x06\x169"  # kombu's list for priority-9 messages of a queue
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


FINAL = "clearhouse_intent_accept_to_final_seconds_count"
RUNTIME = "clearhouse_task_runtime_seconds_count"
# The intents below are instant: they run in the instant lane's stage tasks.
STEPS = ("limits_instant", "settle_instant")
# Fused into limits' task by default (FUSED_STAGES): their own tasks never run.
FUSED = ("fraud_instant", "fees_instant", "authorize_instant")


def _worker_counts() -> dict:
    """Every worker-side count this test moves, summed over the session's workers."""
    counts = {
        "eurc_posted": workers_total("clearhouse_ledger_volume_total", currency="EURC"),
        "fraud": workers_total("clearhouse_fraud_score_count"),
        "final": workers_total(FINAL, priority="instant", status="succeeded"),
        "succeeded": workers_total("clearhouse_intent_transitions_total", status="succeeded"),
    }
    for step in (*STEPS, *FUSED):
        task = TOPOLOGY[step].task
        counts[f"runs {step}"] = workers_total(RUNTIME, task=task)
        counts[f"waits {step}"] = workers_total(
            "clearhouse_task_queue_wait_seconds_count", task=task
        )
    return counts


def test_counters_add_up_across_processes(api, make_merchant, engine, redis_client):
    proc, base = api
    auth = {"Authorization": f"Bearer {f.access_token(base, make_merchant())}"}
    # Whatever earlier tests left running has finished: every change from here on is ours.
    drain(redis_client, TEST_ENV["REDIS_KEY_PREFIX"], QUEUES)
    before_api = scrape(proc.metrics_url)
    before = _worker_counts()

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

    after_api = scrape(proc.metrics_url)

    def delta(name, **labels):
        return total(after_api, name, **labels) - total(before_api, name, **labels)

    health = dict(method="GET", route="/health", status="200")
    assert delta("clearhouse_http_requests_total", **health) == 40
    assert delta("clearhouse_intents_created_total", currency="EURC", priority="instant") == N
    route = dict(method="POST", route="/v1/payment_intents")
    assert delta("clearhouse_http_request_duration_seconds_count", **route) == N
    assert delta("clearhouse_http_requests_total", status="202", **route) == N
    # Both gunicorn workers wrote samples: the totals above are sums of files.
    pids = {p.name.rsplit("_", 1)[-1] for p in Path(proc.metrics_dir, "api").glob("counter_*")}
    assert len(pids) >= 2, pids
    assert ("clearhouse_queue_depth", (("queue", "settlement.instant"),)) in after_api

    # Worker side: every stage ran, in either prefork child, and adds up.
    # Each approved instant intent moves its amount three times: the hold,
    # its capture, and fee + net settlement (posted); in major units.
    expected = 3 * N * AMOUNT / 10**6

    def worker_side_adds_up():
        now = _worker_counts()
        moved = {k: now[k] - before[k] for k in now}
        assert moved["eurc_posted"] == pytest.approx(expected)
        assert (moved["fraud"], moved["final"], moved["succeeded"]) == (N, N, N), moved
        for step in STEPS:
            # A stage runs batches: at least one, one message (its wait) per
            # batch or more, and at most one message per intent.
            assert 1 <= moved[f"runs {step}"] <= moved[f"waits {step}"] <= N, (step, moved)
        # Fraud scored every intent (above) inside limits' task, in its transaction.
        for step in FUSED:
            assert moved[f"runs {step}"] == moved[f"waits {step}"] == 0, (step, moved)

    eventually(worker_side_adds_up)


@pytest.mark.broker
def test_queue_depth_is_what_waits_in_a_paused_queue(api, redis_client):
    """Publish to a queue no worker takes from: the API's gauge reads exactly what waits."""
    from workers.celery_app import app

    proc, _ = api
    queue = "settlement.economy"
    replies = app.control.cancel_consumer(queue, reply=True, timeout=5)
    assert len(replies) == len(processes.WORKERS), replies
    sent = []
    try:
        depth_before = total(scrape(proc.metrics_url), "clearhouse_queue_depth", queue=queue)
        for priority in (None, None, None, 9, 9):  # the plain list and a priority list
            task = app.send_task(
                "clearhouse.settle_window", args=[[]], queue=queue, priority=priority
            )
            sent.append(task.id)
        depth = total(scrape(proc.metrics_url), "clearhouse_queue_depth", queue=queue)
        assert depth - depth_before == len(sent)
        if not BROKER_IS_AMQP:
            # kombu put them in two lists (plain and priority 9): the gauge sums both.
            assert redis_client.llen(queue_key(queue)) >= 3
            assert redis_client.llen(queue_key(queue) + PRIORITY_9) >= 2
    finally:
        # RabbitMQ: left for the worker (an empty window batch does nothing).
        removed = 0 if BROKER_IS_AMQP else _remove_messages(redis_client, queue, set(sent))
        app.control.add_consumer(queue, reply=True, timeout=5)
    assert removed == len(sent) or BROKER_IS_AMQP


def _remove_messages(redis_client, queue: str, task_ids: set) -> int:
    """Take our messages (by task id) off every priority list of ``queue``."""
    removed = 0
    for suffix in ("", "\x06\x163", "\x06\x166", PRIORITY_9):
        key = queue_key(queue) + suffix
        for raw in redis_client.lrange(key, 0, -1):
            if json.loads(raw)["headers"].get("id") in task_ids:
                removed += redis_client.lrem(key, 1, raw)
    return removed


def test_worker_metrics_port_serves_multiprocess_registry(worker, redis_client):
    """A task this test sends shows up on the worker's port (from a prefork child's files)."""
    from workers.celery_app import publish as dispatch

    def runs():
        samples = scrape(f"http://127.0.0.1:{worker.metrics_port}/metrics")
        return total(samples, RUNTIME, task="clearhouse.settle_instant")

    drain(redis_client, TEST_ENV["REDIS_KEY_PREFIX"], QUEUES)  # earlier tests' work is done
    before = runs()
    dispatch("settle_instant", ["pi_no_such_intent"])  # runs, and settles nothing

    def counted():
        assert runs() - before == 1

    eventually(counted)


def test_observations_wait_for_the_commit(engine):
    from sqlalchemy import text

    from shared.db.uow import UnitOfWork

    seen = []
    with UnitOfWork(engine) as uow:
        uow.on_commit(lambda: seen.append("committed"))
        uow.conn.execute(text("SELECT 1"))
        assert seen == []
        uow.commit()
    with UnitOfWork(engine) as uow:
        uow.on_commit(lambda: seen.append("rolled back"))
    with UnitOfWork(engine) as uow:
        uow.conn.execute(text("SELECT 1"))
        uow.commit()  # nothing left over from the rollback
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
