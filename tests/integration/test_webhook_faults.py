"""Webhook faults through the real worker: a poison-pill merchant, a dripping receiver.

A worker of its own (short WEBHOOK_TIMEOUT_S) on a Redis key prefix of its
own: the session's worker, if running, never takes these messages, so the
timings below are this worker's.
"""

from __future__ import annotations

import os
import secrets
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select, text, update

from shared.config import Settings
from shared.db.tables import webhook_attempts
from shared.db.tables import webhook_deliveries as wd
from shared.db.tables import webhook_endpoints as we
from shared.db.uow import UnitOfWork
from shared.security.vault import Vault
from shared.services import events as ev
from tests.conftest import TEST_ENV, free_port
from tests.support import brokers, processes
from tests.support.receiver import Receiver
from tests.support.webhooks import deliveries_of
from tests.unit.test_webhook_send_deadline import DripServer, wait_until

# Sends of one merchant in flight at once per worker process (the default setting).
MERCHANT_CONCURRENCY = int(
    TEST_ENV.get("WEBHOOK_MERCHANT_CONCURRENCY", Settings.webhook_merchant_concurrency)
)

pytestmark = pytest.mark.integration

PREFIX = TEST_ENV["REDIS_KEY_PREFIX"] + "faults:"
# The faults worker's queues: under PREFIX (Redis) or in a vhost of its own.
QUEUES_ENV = brokers.private_env(PREFIX)
TIMEOUT_S = 2.0  # per socket operation; the drip (a byte a second) stays inside it
BUDGET_S = 3 * TIMEOUT_S  # notifications.send_budget_s() in the worker
WORKER_PROCESSES = 2


@pytest.fixture(scope="module")
def faults_worker(database, redis_client):
    env = {**QUEUES_ENV, "WEBHOOK_TIMEOUT_S": str(TIMEOUT_S)}
    with processes.celery_worker(
        "faults", queues="notifications", concurrency=WORKER_PROCESSES, env=env
    ) as w:
        yield w


@pytest.fixture(scope="module")
def to_worker(settings):
    """A dispatch for UnitOfWork that publishes to the faults worker's queue."""
    producer = brokers.producer("faults-producer", QUEUES_ENV)

    def dispatch(step: str, ids: list[str], countdown=None) -> None:
        assert step == "deliver_webhooks"
        producer.send_task("clearhouse.deliver_webhooks", args=[list(ids)], queue="notifications")

    yield dispatch
    producer.close()


@pytest.fixture
def hooked(make_merchant):
    """Factory: a merchant whose webhook URL is a running receiver, as (merchant, receiver)."""
    started = []

    def make():
        port = free_port()
        merchant = make_merchant(webhook_url=f"http://127.0.0.1:{port}/hooks")
        started.append(Receiver([merchant["webhook_secret"]], port).start())
        return merchant, started[-1]

    yield make
    for receiver in started:
        receiver.stop()


def _counter(worker, name: str, **labels) -> float:
    body = requests.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def _delivery(engine, delivery_id):
    with engine.connect() as conn:
        return conn.execute(select(wd).where(wd.c.id == delivery_id)).one()


def _attempts(engine, delivery_ids):
    with engine.connect() as conn:
        return conn.execute(
            select(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(list(delivery_ids)))
        ).all()


def _leased(engine, merchant_id) -> int:
    """Deliveries of the merchant claimed by a worker (their lease is ~38 s)."""
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM webhook_deliveries WHERE merchant_id = :m"
                " AND status = 'pending' AND next_attempt_at > now() + interval '10 seconds'"
            ),
            {"m": merchant_id},
        ).scalar_one()


def _emit(engine, dispatch, merchant_id, n):
    with UnitOfWork(engine, dispatch) as u:
        items = [(merchant_id, "settlement.paid", f"stl_{i}", {}) for i in range(n)]
        ids = ev.emit(u, items)
        u.commit()
    return ids


FAILURES = "clearhouse_webhook_prepare_failures_total"


def test_a_secret_that_does_not_decrypt_holds_back_no_other_merchant(
    faults_worker, to_worker, hooked, engine
):
    (good, good_rx), (bad, bad_rx) = hooked(), hooked()
    # As after a restore under other keys: sealed with a key this deployment lacks.
    other_vault = Vault({"v1": os.urandom(32)}, os.urandom(32))
    with engine.begin() as conn:
        endpoint = conn.execute(
            select(we.c.id).where(we.c.merchant_id == bad["merchant_id"])
        ).scalar_one()
        conn.execute(
            update(we)
            .where(we.c.id == endpoint)
            .values(secret_enc=other_vault.encrypt("whsec_x", aad=endpoint), secret_aad=None)
        )
    before = {
        r: _counter(faults_worker, FAILURES, reason=r) for r in ("secret", "endpoint_missing")
    }

    # One message, one batch: both merchants' events, and a delivery whose endpoint is gone.
    queued: list[str] = []
    with UnitOfWork(engine, lambda step, ids, countdown=None: queued.extend(ids)) as u:
        good_event, bad_event = ev.emit(
            u,
            [
                (good["merchant_id"], "settlement.paid", "stl_good", {}),
                (bad["merchant_id"], "settlement.paid", "stl_bad", {}),
            ],
        )
        orphan = f"whd_{secrets.token_hex(12)}"
        u.conn.execute(
            insert(wd).values(
                id=orphan,
                event_id=good_event,
                # No endpoint (as a process of the version before 0015 writes them), and
                # no merchant to take its first endpoint from.
                merchant_id="mch_gone",
                url=good_rx.url,
                next_attempt_at=func.now(),
            )
        )
        u.commit()
    to_worker("deliver_webhooks", [*queued, orphan])

    good_rx.wait_for(lambda r: r.ids() == [good_event], timeout=15)
    assert good_rx.received[0].verified_with == [0] and good_rx.rejected == 0

    (bad_delivery,) = deliveries_of(engine, bad["merchant_id"])
    wait_until(
        lambda: (
            _delivery(engine, bad_delivery.id).status != "pending"
            and _delivery(engine, orphan).status != "pending"
        ),
        15,
        "the unsendable deliveries to be failed",
    )
    for delivery_id, error in (
        (bad_delivery.id, "not sent: webhook secret cannot be decrypted"),
        (orphan, "not sent: webhook endpoint not found"),
    ):
        d = _delivery(engine, delivery_id)
        assert (d.status, d.attempts, d.last_status_code) == ("failed", 1, None)
        assert d.last_error.startswith(error) and d.completed_at is not None
        (a,) = _attempts(engine, [delivery_id])
        assert (a.attempt, a.outcome, a.status_code, a.error) == (1, "failed", None, d.last_error)
    assert "ciphertext failed authentication" in _delivery(engine, bad_delivery.id).last_error
    assert bad_rx.hits == {}

    wait_until(
        lambda: (
            _counter(faults_worker, FAILURES, reason="secret") == before["secret"] + 1
            and _counter(faults_worker, FAILURES, reason="endpoint_missing")
            == before["endpoint_missing"] + 1
        ),
        10,
        "the prepare failures to be counted",
    )
    (good_delivery,) = deliveries_of(engine, good["merchant_id"])
    wait_until(
        lambda: _delivery(engine, good_delivery.id).status == "succeeded",
        10,
        "the good delivery to be recorded",
    )


def test_a_dripping_receiver_delays_no_other_merchant(
    faults_worker, to_worker, make_merchant, hooked, engine
):
    drip = DripServer(interval=1.0).start()
    try:
        slow = make_merchant(webhook_url=drip.url)["merchant_id"]
        fast, fast_rx = hooked()

        # Two batches of the slow merchant's events, one after the other, so
        # that each worker process may have some: more than the sender threads.
        started = time.monotonic()
        for n in (1, 2):
            _emit(engine, to_worker, slow, 10)
            wait_until(lambda n=n: _leased(engine, slow) == 10 * n, 10, f"batch {n} claimed")
        wait_until(lambda: drip.open_now() >= MERCHANT_CONCURRENCY, 10, "the drip to start")

        # While those drip, the other merchant's events go out at once.
        asked = time.monotonic()
        fast_events = _emit(engine, to_worker, fast["merchant_id"], 3)
        fast_rx.wait_for(lambda r: set(r.ids()) >= set(fast_events), timeout=10)
        assert time.monotonic() - asked < 2.5
        assert drip.open_now() > 0  # still dripping meanwhile
        assert fast_rx.rejected == 0

        # The slow merchant never had more than its cap in flight per process;
        # each of its sends was cut off at the deadline (the socket closed, so
        # the thread is free) and failed; the rest were released, not queued.
        def settled():
            return _leased(engine, slow) == 0 and drip.open_now() == 0

        wait_until(settled, BUDGET_S + 15, "the slow merchant's sends to end")
        assert time.monotonic() - started < BUDGET_S + 5
        assert MERCHANT_CONCURRENCY <= drip.max_open <= WORKER_PROCESSES * MERCHANT_CONCURRENCY
        for conn in drip.connections:
            assert conn.closed_at - conn.accepted_at < BUDGET_S + 1.5

        rows = deliveries_of(engine, slow)
        sent = [d for d in rows if d.attempts]
        assert len(sent) == len(drip.connections)
        for a in _attempts(engine, [d.id for d in sent]):
            assert (a.attempt, a.outcome, a.status_code) == (1, "failed", None)
            assert a.error == "deadline exceeded"
            assert BUDGET_S * 1000 <= a.latency_ms < (BUDGET_S + 1.5) * 1000
        released = [d for d in rows if not d.attempts]
        assert len(released) == 20 - len(sent)
        with engine.connect() as conn:
            now = conn.execute(text("SELECT now()")).scalar_one()
        # Due again (the dispatcher will send them), not leased behind the drip.
        assert all(d.status == "pending" and d.next_attempt_at <= now for d in released)
    finally:
        drip.stop()
