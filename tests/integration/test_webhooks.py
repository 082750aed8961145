"""Webhooks end to end below HTTP: real worker, real receiver, real Postgres and Redis."""

from __future__ import annotations

import os
import random
import statistics
import threading
import time

import pytest
from sqlalchemy import select, text

from shared.db.tables import events, webhook_attempts
from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.services import events as ev
from shared.services import webhook_endpoints, webhooks
from shared.services.errors import NotFound
from tests import factories as f
from tests.conftest import free_port
from tests.support.receiver import Receiver
from workers.dispatch import dispatch

pytestmark = pytest.mark.integration


@pytest.fixture
def hooked(make_merchant):
    """A merchant whose webhook URL is a running receiver; yields (merchant, receiver)."""
    port = free_port()
    merchant = make_merchant(webhook_url=f"http://127.0.0.1:{port}/hooks")
    receiver = Receiver([merchant["webhook_secret"]], port).start()
    yield merchant, receiver
    receiver.stop()


def _deliveries(engine, merchant_id):
    with engine.connect() as conn:
        return conn.execute(select(wd).where(wd.c.merchant_id == merchant_id)).all()


def _attempts(engine, delivery_id):
    with engine.connect() as conn:
        return conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id == delivery_id)
            .order_by(webhook_attempts.c.attempt)
        ).all()


def _event_ids(engine, merchant_id):
    with engine.connect() as conn:
        return set(
            conn.execute(select(events.c.id).where(events.c.merchant_id == merchant_id)).scalars()
        )


def _dispatch_until(predicate, timeout=30):
    """Run the scheduler's dispatch job (as beat would) until ``predicate()`` holds."""
    from scheduler.webhook_tasks import dispatch_webhooks

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "dispatch did not get there in time"
        dispatch_webhooks.apply()
        time.sleep(0.2)


def test_every_state_change_arrives_signed_exactly_once(worker, hooked, submit, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    ids = [
        submit(mid, f.card_body()),
        submit(mid, f.card_body(f.DECLINE)),
        submit(mid, f.card_body(capture_method="manual")),
    ]
    f.wait_until_final(engine, ids)
    expected = _event_ids(engine, mid)
    assert len(expected) == 6
    receiver.wait_for(lambda r: set(r.ids()) >= expected)
    time.sleep(1.0)  # anything duplicated would arrive by now
    assert sorted(receiver.ids()) == sorted(expected)  # exactly once each
    assert receiver.rejected == 0
    by_intent: dict[str, list[str]] = {}
    for got in receiver.received:
        assert got.verified_with == [0]
        by_intent.setdefault(got.event["data"]["object"]["id"], []).append(got.event["type"])
    # Deliveries run concurrently, so arrival order is not promised (as with
    # Stripe): receivers order by the event's `created` or fetch the object.
    assert {k: sorted(v) for k, v in by_intent.items()} == {
        ids[0]: ["payment_intent.processing", "payment_intent.succeeded"],
        ids[1]: ["payment_intent.payment_failed", "payment_intent.processing"],
        ids[2]: ["payment_intent.processing", "payment_intent.requires_capture"],
    }
    for d in _deliveries(engine, mid):
        assert (d.status, d.attempts, d.last_status_code) == ("succeeded", 1, 200)
        (a,) = _attempts(engine, d.id)
        assert a.outcome == "succeeded" and a.latency_ms is not None
        assert a.response_body == '{"received":true}'


def test_a_receiver_that_is_down_then_back_gets_every_event(worker, hooked, submit, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    receiver.stop()
    ids = [submit(mid, f.card_body()) for _ in range(5)]
    f.wait_until_final(engine, ids)
    expected = _event_ids(engine, mid)

    def all_failed_once():
        rows = _deliveries(engine, mid)
        return len(rows) == len(expected) and all(r.attempts >= 1 for r in rows)

    _dispatch_until(all_failed_once)
    assert all(r.status == "pending" for r in _deliveries(engine, mid))
    first = _attempts(engine, _deliveries(engine, mid)[0].id)[0]
    assert first.outcome == "failed" and first.status_code is None and first.error

    receiver.start()  # same port
    _dispatch_until(lambda: set(receiver.ids()) >= expected)
    assert set(receiver.ids()) == expected
    _dispatch_until(lambda: all(r.status == "succeeded" for r in _deliveries(engine, mid)))


def test_after_the_last_attempt_the_delivery_is_failed(worker, hooked, submit, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    receiver.mode = "fail"
    submit(mid, f.card_body(f.DECLINE))
    _dispatch_until(lambda: sum(r.attempts for r in _deliveries(engine, mid)) >= 3)
    # Age the deliveries past the (scaled) 3 days: the next failure is the last.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE webhook_deliveries SET created_at = now() - interval '1 hour'"
                " WHERE merchant_id = :m"
            ),
            {"m": mid},
        )
    _dispatch_until(lambda: all(r.status == "failed" for r in _deliveries(engine, mid)))
    for d in _deliveries(engine, mid):
        assert d.last_status_code == 500 and d.completed_at is not None
        tries = _attempts(engine, d.id)
        assert [a.attempt for a in tries] == list(range(1, d.attempts + 1))
        assert all(a.outcome == "failed" and a.status_code == 500 for a in tries)
        assert all(len(a.response_body) == webhooks.RESPONSE_BODY_MAX for a in tries)
    n = receiver.hits["/hooks"]
    time.sleep(1.0)
    _dispatch_until(lambda: True)
    assert receiver.hits["/hooks"] == n  # nothing is sent after the last attempt


def test_redirects_are_not_followed(worker, hooked, submit, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    receiver.mode = "redirect"
    submit(mid, f.card_body(f.DECLINE))
    _dispatch_until(lambda: any(r.attempts for r in _deliveries(engine, mid)))
    d = next(r for r in _deliveries(engine, mid) if r.attempts)
    assert d.last_status_code == 302 and d.last_error == "redirect not followed"
    assert "/moved" not in receiver.hits


def test_rotation_signs_with_both_secrets_during_the_overlap(worker, hooked, submit, engine, vault):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    with engine.begin() as conn:
        rotated = webhook_endpoints.rotate_secret(conn, vault, mid, overlap_h=1)
    assert rotated["webhook_secret"] != merchant["webhook_secret"]
    receiver.secrets.append(rotated["webhook_secret"])
    submit(mid, f.card_body(f.DECLINE))
    receiver.wait_for(lambda r: len(r.received) == 2)
    for got in receiver.received:
        assert got.signature.count("v1=") == 2
        assert got.verified_with == [0, 1]  # old and new both verify

    with engine.begin() as conn:  # rotate again with no overlap: only the newest signs
        newest = webhook_endpoints.rotate_secret(conn, vault, mid, overlap_h=0)
    receiver.secrets.append(newest["webhook_secret"])
    submit(mid, f.card_body(f.DECLINE))
    receiver.wait_for(lambda r: len(r.received) == 4)
    for got in receiver.received[2:]:
        assert got.signature.count("v1=") == 1 and got.verified_with == [2]


def test_two_concurrent_claims_lease_a_delivery_once(engine, hooked, submit):
    merchant, _ = hooked
    submit(merchant["merchant_id"], f.card_body(), enqueue=False)
    (d,) = _deliveries(engine, merchant["merchant_id"])
    won: list = []
    with engine.connect() as first:
        tx = first.begin()
        won.append(webhooks.claim(first, [d.id], lease_s=60))

        def second():
            with engine.begin() as conn:
                won.append(webhooks.claim(conn, [d.id], lease_s=60))

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)  # the second claim now waits on the row lock
        tx.commit()
        t.join(10)
    assert [len(w) for w in won] == [1, 0]


def test_redeliver_makes_a_new_delivery_only_for_own_events(worker, hooked, make_merchant, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    other = make_merchant()["merchant_id"]
    with UnitOfWork(engine, dispatch) as uow:
        (event_id,) = ev.emit(uow.conn, [(mid, "payment_intent.processing", "pi_x", {})])
        uow.commit()
    receiver.wait_for(lambda r: r.ids() == [event_id])
    with UnitOfWork(engine, dispatch) as uow:
        again = webhooks.redeliver(uow.conn, mid, event_id)
        uow.commit()
    receiver.wait_for(lambda r: r.ids() == [event_id, event_id])
    assert again.event_id == event_id and again.status == "pending"
    with engine.begin() as conn, pytest.raises(NotFound):
        webhooks.redeliver(conn, other, event_id)


def test_first_attempt_latency(worker, hooked, submit, engine):
    """Event created_at -> receiver has it, first attempts, 200 intents (printed with -s)."""
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    rng = random.Random(3)
    # Offered rate (intents/s); 0 submits as fast as one thread can (a burst).
    rate = float(os.environ.get("WEBHOOK_LATENCY_RATE", "50"))
    ids = []
    for _ in range(200):
        ids.append(submit(mid, f.card_body(f.random_visa(rng))))
        time.sleep(1 / rate if rate else 0)
    f.wait_until_final(engine, ids, timeout=120)
    expected = _event_ids(engine, mid)
    receiver.wait_for(lambda r: set(r.ids()) >= expected, timeout=60)
    with engine.connect() as conn:
        created = dict(
            conn.execute(
                select(events.c.id, events.c.created_at).where(events.c.merchant_id == mid)
            ).all()
        )
    lat = sorted(
        (r.received_at - created[r.event["id"]].timestamp()) * 1000 for r in receiver.received
    )
    p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
    print(
        f"\nwebhook first-attempt latency, {len(lat)} events at {rate or 'max'} intents/s:"
        f" p50={p50:.0f} ms p99={p99:.0f} ms max={lat[-1]:.0f} ms"
    )
    # The receiver answers before the worker records the attempt: wait for it.
    deadline = time.monotonic() + 15
    while any(d.status == "pending" for d in _deliveries(engine, mid)):
        assert time.monotonic() < deadline, "attempts were not recorded"
        time.sleep(0.1)
    assert all((d.status, d.attempts) == ("succeeded", 1) for d in _deliveries(engine, mid))
