"""MAX_QUEUE_WAIT_MS on a real gunicorn: a create that waited for a thread past the bound
is refused 503 overloaded, stores nothing, and goes through when sent again.

One worker process of one thread. The test's own transaction holds an
uncommitted row of the first create's Idempotency-Key, so that create's claim
waits on the unique index (a real database wait, as under load) and holds the
only thread; the second
create queues behind it for longer than the bound. Released, the first is
accepted and the second, picked up late, is refused before any work.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from sqlalchemy import func, select, text

from shared.db.tables import idempotency_keys, payment_intents
from tests import factories as f
from tests.conftest import free_port
from tests.support import processes
from tests.support.waiting import until

pytestmark = pytest.mark.integration

BOUND_MS = 100


@pytest.fixture(scope="module")
def api(database):
    env = {"MAX_QUEUE_WAIT_MS": str(BOUND_MS), "THREADS": "1", "MAX_BACKLOG": "0"}
    with processes.gunicorn(free_port(), workers=1, env=env) as p:
        yield p


def _blocked_by(engine, holder: int) -> bool:
    """Whether some backend waits for a lock that backend ``holder`` holds."""
    with engine.connect() as c:
        return bool(
            c.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE :h = ANY(pg_blocking_pids(pid))"),
                {"h": holder},
            ).scalar()
        )


def _intents(engine, merchant_id: str) -> int:
    with engine.connect() as c:
        return c.execute(
            select(func.count()).where(payment_intents.c.merchant_id == merchant_id)
        ).scalar()


def _key_stored(engine, merchant_id: str, key: str) -> bool:
    with engine.connect() as c:
        found = c.execute(
            select(idempotency_keys.c.key).where(
                idempotency_keys.c.merchant_id == merchant_id, idempotency_keys.c.key == key
            )
        )
        return found.first() is not None


def test_a_create_queued_past_the_bound_is_refused_and_changes_nothing(api, engine, make_merchant):
    merchant = make_merchant()
    mid = merchant["merchant_id"]
    token = f.access_token(api.url, merchant)
    keys = {name: f"qw-{name}-{uuid.uuid4().hex[:8]}" for name in ("held", "queued")}
    bodies = {name: f.card_body(f.new_card()) for name in keys}
    answers: dict[str, requests.Response] = {}

    def create(name: str) -> requests.Response:
        return requests.post(
            api.url + "/v1/payment_intents",
            json=bodies[name],
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": keys[name]},
            timeout=30,
        )

    def send(name: str) -> threading.Thread:
        t = threading.Thread(target=lambda: answers.__setitem__(name, create(name)))
        t.start()
        return t

    with engine.connect() as lock:
        holder = lock.execute(text("SELECT pg_backend_pid()")).scalar()
        # An uncommitted row of the first create's key: its claim waits on the unique index.
        lock.execute(
            idempotency_keys.insert().values(
                merchant_id=mid,
                key=keys["held"],
                request_method="POST",
                request_path="/v1/payment_intents",
                request_hash="0" * 64,
            )
        )
        held = send("held")
        until(lambda: _blocked_by(engine, holder), timeout=15, what="the first create to block")
        queued = send("queued")
        # The input under test: the second create waits for the thread past the bound.
        deadline = time.monotonic() + 3 * BOUND_MS / 1000
        until(lambda: time.monotonic() >= deadline, timeout=5, what="the bound to pass")
        lock.rollback()
    held.join(30)
    queued.join(30)

    assert answers["held"].status_code == 202, answers["held"].text
    refused = answers["queued"]
    assert refused.status_code == 503, refused.text
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["code"] == "overloaded"
    assert refused.json()["request_id"] == refused.headers["X-Request-Id"]
    # Nothing of it was stored: one intent, and the refused key is free.
    assert _intents(engine, mid) == 1
    assert not _key_stored(engine, mid, keys["queued"])

    again = create("queued")
    assert again.status_code == 202, again.text
    assert _intents(engine, mid) == 2
    metrics = requests.get(api.metrics_url, timeout=5).text
    assert 'clearhouse_intake_queue_shed_total{route="/v1/payment_intents"} 1.0' in metrics


def test_with_a_free_thread_nothing_is_refused(api, make_merchant):
    merchant = make_merchant()
    token = f.access_token(api.url, merchant)
    with requests.Session() as s:
        for _ in range(5):
            r = s.post(
                api.url + "/v1/payment_intents",
                json=f.card_body(f.new_card()),
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert r.status_code == 202, r.text
