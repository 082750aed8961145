"""Process and broker faults on a stack of its own: nothing accepted is lost.

Each test gets a fresh database and a private Redis server (so killing them
touches no other test), and starts the processes it breaks: a solo pipeline
worker as deploy/Procfile runs it, the outbox relay, the API, beat.

- a worker SIGKILLed while its authorize batch waits for the acquirer loses
  nothing: another worker and beat's re-drive finish every intent, each
  captured (and settled) once;
- the API keeps accepting (202) while the relay is stopped, or Redis is
  down, and every intent accepted meanwhile is processed once they are back:
  the relay catches up on its backlog by itself, also after a Redis outage
  (it publishes inside the transaction that marks the intents, so a failed
  publish unmarks them) — with no beat running, so re-drive cannot help.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from datetime import date
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import select

from shared.db.tables import ledger_transfers
from shared.db.tables import payment_intents as pi
from tests import factories as f
from tests.conftest import BROKER_IS_AMQP, TEST_DB, free_port
from tests.support import brokers, processes
from tests.support.scratchdb import scratch_database
from tests.support.units import bound

pytestmark = pytest.mark.integration

QUEUES = f"{processes.PAYMENT_QUEUES},maintenance"
FAST_BEAT = {
    "BEAT_LOCK_TIMEOUT_S": "3",
    "REDRIVE_INTERVAL_S": "1",
    "REDRIVE_AFTER_S": "2",
    "HOLD_EXPIRY_INTERVAL_S": "1",
}


@contextlib.contextmanager
def private_stack(name: str):
    """A fresh database and Redis server (on RabbitMQ, a vhost too); ``env`` points
    processes at them."""
    port = free_port()
    with scratch_database(f"clearhouse_{name}") as (url, engine):
        stack = SimpleNamespace(
            engine=engine,
            redis_port=port,
            redis=processes.redis_server(port),
            env={
                "DATABASE_URL": url,
                "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                **brokers.private_vhost(f"{TEST_DB}_{name}"),
            },
        )
        with contextlib.ExitStack() as procs:
            stack.procs = procs
            procs.callback(lambda: stack.redis.stop())
            yield stack


def _merchant(engine, vault) -> dict:
    from shared.db.uow import UnitOfWork
    from shared.services import merchants

    with UnitOfWork(engine) as u:
        m = merchants.create_merchant(u, vault, "faults", None)
        u.commit()
    return m


def _create(engine, vault, merchant_id: str, bodies: list[dict]) -> list[str]:
    """Intents committed together: the relay sends them on in one message, one batch."""
    from shared.db.uow import UnitOfWork
    from shared.domain.validation import validate_create
    from shared.services import intents

    with UnitOfWork(engine) as u:
        ids = [
            intents.create(
                u,
                vault,
                merchant_id,
                validate_create(body, date.today()),
                client_ip="192.0.2.44",
                request_id=None,
            ).id
            for body in bodies
        ]
        u.commit()
    return ids


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)
    return value


def _rows(engine, ids) -> dict:
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(select(pi).where(pi.c.id.in_(ids)))}


def _final(stack, ids, timeout: float = 60) -> dict:
    try:
        return f.wait_until_final(stack.engine, ids, timeout=timeout)
    except AssertionError as exc:
        logs = "\n".join(
            f"--- {p.name}\n{p.output()[-2500:]}" for p in getattr(stack, "watched", [])
        )
        raise AssertionError(f"{exc}\n{logs}") from None


def _books(engine) -> list[str]:
    from shared.services.reconcile import discrepancies

    with engine.connect() as conn:
        return discrepancies(bound(conn))


@pytest.mark.broker
def test_a_worker_killed_mid_batch_loses_nothing_and_captures_once(vault):
    with private_stack("sigkill") as stack:
        # Every acquirer call takes 5 s: the authorize batch sits in it, holds placed.
        slow = processes.celery_worker(
            "sigkill-slow",
            queues=QUEUES,
            pool="solo",
            concurrency=1,
            env={**stack.env, "ACQUIRER_LATENCY_MS": "5000"},
        )
        stack.procs.callback(slow.stop)
        stack.procs.enter_context(processes.relay(stack.env))
        merchant = _merchant(stack.engine, vault)["merchant_id"]
        rng = random.Random()
        bodies = [f.card_body(f.random_visa(rng), 700 + i, priority="instant") for i in range(20)]
        ids = _create(stack.engine, vault, merchant, bodies)

        def all_held():
            rows = _rows(stack.engine, ids)
            return len(rows) == len(ids) and all(
                r.status == "processing" and r.stage == "fee_computed" and r.hold_transfer_id
                for r in rows.values()
            )

        _wait(all_held, 30, "every hold to be placed (the batch is with the acquirer)")
        slow.kill()  # SIGKILL, mid-batch: nothing acked, nothing applied
        slow.proc.wait(10)
        assert all_held()  # no answer was recorded before the kill

        # The dead worker's messages stay unacknowledged in Redis for the visibility
        # timeout (an hour): only beat's re-drive can bring them back now.
        fresh = stack.procs.enter_context(
            processes.celery_worker(
                "sigkill-fresh", queues=QUEUES, pool="solo", concurrency=1, env=stack.env
            )
        )
        beat = stack.procs.enter_context(processes.celery_beat({**stack.env, **FAST_BEAT}))
        stack.watched = [fresh, beat]
        rows = _final(stack, ids)
        assert {(r.status, r.amount_received == r.amount) for r in rows.values()} == {
            ("succeeded", True)
        }
        _wait(
            lambda: all(
                r.settlement_status == "settled" for r in _rows(stack.engine, ids).values()
            ),
            30,
            "instant settlement",
        )
        with stack.engine.connect() as conn:
            moves = Counter(
                (t.intent_id, t.kind, t.reason)
                for t in conn.execute(
                    select(ledger_transfers).where(ledger_transfers.c.intent_id.in_(ids))
                )
            )
        # One hold, one capture, one fee and one settlement per intent: none twice.
        for intent_id in ids:
            assert {k[1:]: n for k, n in moves.items() if k[0] == intent_id} == {
                ("pending", "authorization"): 1,
                ("post_pending", "capture"): 1,
                ("posted", "fee"): 1,
                ("posted", "settlement"): 1,
            }, intent_id
        assert _books(stack.engine) == []
        # RabbitMQ gives a dead consumer's unacked messages to the next one at
        # once (its connection closed): no re-drive is needed there.
        assert "re-driving" in fresh.output() or BROKER_IS_AMQP


@pytest.fixture
def api_stack(vault):
    """Private database and Redis with a worker, the relay and the API on them."""
    with private_stack("catchup") as stack:
        stack.worker = stack.procs.enter_context(
            processes.celery_worker(
                "catchup", queues=QUEUES, pool="solo", concurrency=1, env=stack.env
            )
        )
        stack.relay = processes.relay(stack.env)
        stack.procs.callback(lambda: stack.relay.stop())
        port = free_port()
        stack.api = stack.procs.enter_context(processes.gunicorn(port, workers=1, env=stack.env))
        stack.base = f"http://127.0.0.1:{port}"
        stack.watched = [stack.worker, stack.relay]
        merchant = _merchant(stack.engine, vault)
        stack.auth = {"Authorization": f"Bearer {f.access_token(stack.base, merchant)}"}
        yield stack


def _accept(stack, n: int) -> list[str]:
    """Create ``n`` intents over HTTP; each must be accepted (202)."""
    rng = random.Random()
    ids = []
    for _ in range(n):
        r = requests.post(
            stack.base + "/v1/payment_intents",
            json=f.card_body(f.random_visa(rng), 800, priority="instant"),
            headers=stack.auth,
            timeout=10,
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def test_the_api_accepts_while_the_relay_is_down_and_the_relay_catches_up(api_stack):
    stack = api_stack
    before = _accept(stack, 2)
    _final(stack, before)
    stack.relay.kill()
    stack.relay.proc.wait(10)

    ids = _accept(stack, 10)
    rows = _rows(stack.engine, ids)
    assert {(r.status, r.stage, r.enqueued_at) for r in rows.values()} == {
        ("processing", "received", None)
    }  # committed, waiting in the outbox
    stack.relay = processes.relay(stack.env)
    stack.watched = [stack.worker, stack.relay]
    rows = _final(stack, ids, timeout=30)
    assert {r.status for r in rows.values()} == {"succeeded"}
    assert _books(stack.engine) == []


@pytest.mark.skipif(
    BROKER_IS_AMQP, reason="a Redis broker's outage (RabbitMQ's: test_broker_restart)"
)
def test_the_api_accepts_while_redis_is_down_and_all_is_processed_after(api_stack):
    stack = api_stack  # no beat: the relay alone must catch up
    before = _accept(stack, 2)
    _final(stack, before)
    stack.redis.kill()
    stack.redis.stop()

    ids = _accept(stack, 10)
    ready = requests.get(stack.base + "/ready", timeout=10)
    assert ready.status_code == 503, ready.text  # the broker is away, and /ready says so
    # Down long enough for the relay to fail a publish (which rolls its claim back).
    stack.relay.wait_for("relay: pass failed", timeout=30)
    stack.redis = processes.redis_server(stack.redis_port)  # back, and empty
    rows = _final(stack, ids, timeout=60)
    assert {r.status for r in rows.values()} == {"succeeded"}
    assert _books(stack.engine) == []
