"""Webhooks end to end below HTTP: real worker, real receiver, real Postgres and Redis."""

from __future__ import annotations

import os
import random
import re
import statistics
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from shared.db.tables import events
from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.services import event_log, webhook_endpoints, webhooks
from shared.services import events as ev
from shared.services.errors import NotFound
from tests import factories as f
from tests.conftest import BROKER_IS_AMQP
from tests.support import processes
from tests.support.units import bound
from tests.support.waiting import until
from tests.support.webhooks import attempts_of, deliveries_of
from workers.celery_app import publish as dispatch

pytestmark = pytest.mark.integration


def _event_ids(engine, merchant_id):
    with engine.connect() as conn:
        return set(
            conn.execute(select(events.c.id).where(events.c.merchant_id == merchant_id)).scalars()
        )


def _dispatch_until(predicate, timeout=30):
    """Run the scheduler's dispatch job (as beat would) until ``predicate()`` holds.

    At least one pass runs before the first look, so a predicate that is
    already true still has a pass of the dispatcher behind it.
    """
    from workers.periodic import dispatch_webhooks

    def passed():
        dispatch_webhooks.apply()
        return predicate()

    until(passed, timeout, interval=0.2, what="the dispatcher")


def _lost_event(engine, merchant_id) -> str:
    """An event whose first-attempt message was lost: only the dispatcher can send it.

    Its delivery is backdated past the dispatcher's grace for first attempts,
    so the very next dispatcher pass takes it.
    """
    with UnitOfWork(engine) as uow:  # no dispatch: the after-commit message goes nowhere
        (event_id,) = ev.emit(
            uow, [(merchant_id, "settlement.paid", "st_marker", {"id": "st_marker"})]
        )
        uow.conn.execute(
            text(
                "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 minute'"
                " WHERE event_id = :e"
            ),
            {"e": event_id},
        )
        uow.commit()
    return event_id


def _delivery_of(engine, event_id):
    with engine.connect() as conn:
        return conn.execute(select(wd).where(wd.c.event_id == event_id)).one()


def _dispatcher_runs(log: str) -> list[int]:
    """What each run of the dispatch job in the worker returned (deliveries it sent on)."""
    return [
        int(n)
        for n in re.findall(
            r"Task clearhouse\.scheduler\.dispatch_webhooks\[[^]]+\] succeeded in [^:]+: (\d+)", log
        )
    ]


@pytest.fixture
def beat(worker):
    """The real scheduler: beat sends the dispatch job every second, the worker runs it."""
    with processes.celery_beat() as b:
        yield b


@pytest.mark.broker
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
    until(
        lambda: all(d.status == "succeeded" for d in deliveries_of(engine, mid)),
        what="every attempt to be recorded",
    )
    # A marker that only the dispatcher can send: once it has arrived, a
    # dispatcher pass ran after every attempt was recorded (any delivery still
    # due would have gone in that pass) and the notifications queue moved past
    # every message sent before it (a duplicated one would have arrived).
    marker = _lost_event(engine, mid)
    _dispatch_until(lambda: marker in receiver.ids())
    assert sorted(receiver.ids()) == sorted([*expected, marker])  # exactly once each
    assert receiver.rejected == 0
    by_intent: dict[str, list[str]] = {}
    for got in receiver.received:
        if got.event["id"] == marker:
            continue
        assert got.verified_with == [0]
        by_intent.setdefault(got.event["data"]["object"]["id"], []).append(got.event["type"])
    # Deliveries run concurrently, so arrival order is not promised (as with
    # Stripe): receivers order by the event's `created` or fetch the object.
    assert {k: sorted(v) for k, v in by_intent.items()} == {
        ids[0]: ["payment_intent.processing", "payment_intent.succeeded"],
        ids[1]: ["payment_intent.payment_failed", "payment_intent.processing"],
        ids[2]: ["payment_intent.processing", "payment_intent.requires_capture"],
    }
    until(lambda: _delivery_of(engine, marker).status == "succeeded", what="the marker recorded")
    for d in deliveries_of(engine, mid):
        assert (d.status, d.attempts, d.last_status_code) == ("succeeded", 1, 200)
        (a,) = attempts_of(engine, d.id)
        assert a.outcome == "succeeded" and a.latency_ms is not None
        assert a.response_body == '{"received":true}'


def test_a_receiver_that_is_down_then_back_gets_every_event(worker, beat, hooked, submit, engine):
    """Retries come from the real scheduler: beat's dispatch job, run by the worker."""
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    log_start = len(worker.output())
    receiver.stop()
    ids = [submit(mid, f.card_body()) for _ in range(5)]
    f.wait_until_final(engine, ids)
    expected = _event_ids(engine, mid)

    def all_failed_once():
        rows = deliveries_of(engine, mid)
        return len(rows) == len(expected) and all(r.attempts >= 1 for r in rows)

    until(all_failed_once, what="every first attempt to fail")
    assert all(r.status == "pending" for r in deliveries_of(engine, mid))
    first = attempts_of(engine, deliveries_of(engine, mid)[0].id)[0]
    assert first.outcome == "failed" and first.status_code is None and first.error

    receiver.start()  # same port; nothing but the dispatcher sends a retry
    receiver.wait_for(lambda r: set(r.ids()) >= expected, timeout=60)
    until(
        lambda: all(r.status == "succeeded" for r in deliveries_of(engine, mid)),
        what="every delivery to succeed",
    )
    assert sorted(receiver.ids()) == sorted(expected)
    retries = 0
    for d in deliveries_of(engine, mid):
        tries = attempts_of(engine, d.id)
        assert len(tries) == d.attempts >= 2  # delivered by a retry
        assert [a.outcome for a in tries] == ["failed"] * (d.attempts - 1) + ["succeeded"]
        retries += d.attempts - 1
    # Every retry was handed on by a run of the beat-driven job in the worker.
    assert sum(_dispatcher_runs(worker.output()[log_start:])) >= retries


def test_the_scheduler_sends_a_first_attempt_whose_message_was_lost(worker, beat, hooked, engine):
    merchant, receiver = hooked
    log_start = len(worker.output())
    with UnitOfWork(engine) as uow:  # committed, but its message never published
        (event_id,) = ev.emit(
            uow, [(merchant["merchant_id"], "settlement.paid", "st_lost", {"id": "st_lost"})]
        )
        uow.commit()
    # Not before the grace for first attempts (5 s), and within a few beats after.
    receiver.wait_for(lambda r: event_id in r.ids(), timeout=30)
    until(lambda: _delivery_of(engine, event_id).status == "succeeded", what="the attempt recorded")
    d = _delivery_of(engine, event_id)
    assert d.attempts == 1 and receiver.ids() == [event_id]
    assert d.completed_at - d.created_at >= timedelta(seconds=5)
    assert sum(_dispatcher_runs(worker.output()[log_start:])) >= 1


def test_after_the_last_attempt_the_delivery_is_failed(worker, hooked, submit, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    receiver.mode = "fail"
    submit(mid, f.card_body(f.DECLINE))
    _dispatch_until(lambda: sum(r.attempts for r in deliveries_of(engine, mid)) >= 3)
    # Age the deliveries past the (scaled) 3 days: the next failure is the last.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE webhook_deliveries SET created_at = now() - interval '1 hour'"
                " WHERE merchant_id = :m"
            ),
            {"m": mid},
        )
    _dispatch_until(lambda: all(r.status == "failed" for r in deliveries_of(engine, mid)))
    for d in deliveries_of(engine, mid):
        assert d.last_status_code == 500 and d.completed_at is not None
        tries = attempts_of(engine, d.id)
        assert [a.attempt for a in tries] == list(range(1, d.attempts + 1))
        assert all(a.outcome == "failed" and a.status_code == 500 for a in tries)
        assert all(len(a.response_body) == webhooks.RESPONSE_BODY_MAX for a in tries)
    attempts = {d.id: d.attempts for d in deliveries_of(engine, mid)}
    n = receiver.hits["/hooks"]
    # Nothing is sent after the last attempt: a dispatcher pass that did send
    # (a marker only it can send) sends the marker alone.
    receiver.mode = "ok"
    marker = _lost_event(engine, mid)
    _dispatch_until(lambda: _delivery_of(engine, marker).status == "succeeded")
    assert receiver.hits["/hooks"] == n + 1
    assert receiver.ids() == [marker]
    assert {
        d.id: d.attempts for d in deliveries_of(engine, mid) if d.event_id != marker
    } == attempts


def test_redirects_are_not_followed(worker, hooked, submit, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    receiver.mode = "redirect"
    submit(mid, f.card_body(f.DECLINE))
    _dispatch_until(lambda: any(r.attempts for r in deliveries_of(engine, mid)))
    d = next(r for r in deliveries_of(engine, mid) if r.attempts)
    assert d.last_status_code == 302 and d.last_error == "redirect not followed"
    assert "/moved" not in receiver.hits


def test_rotation_signs_with_both_secrets_during_the_overlap(worker, hooked, submit, engine, vault):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    with engine.begin() as conn:
        rotated = webhook_endpoints.rotate_secret(bound(conn), vault, mid, overlap_h=1)
    assert rotated["webhook_secret"] != merchant["webhook_secret"]
    receiver.secrets.append(rotated["webhook_secret"])
    submit(mid, f.card_body(f.DECLINE))
    receiver.wait_for(lambda r: len(r.received) == 2)
    for got in receiver.received:
        assert got.signature.count("v1=") == 2
        assert got.verified_with == [0, 1]  # old and new both verify

    with engine.begin() as conn:  # rotate again with no overlap: only the newest signs
        newest = webhook_endpoints.rotate_secret(bound(conn), vault, mid, overlap_h=0)
    receiver.secrets.append(newest["webhook_secret"])
    submit(mid, f.card_body(f.DECLINE))
    receiver.wait_for(lambda r: len(r.received) == 4)
    for got in receiver.received[2:]:
        assert got.signature.count("v1=") == 1 and got.verified_with == [2]


def test_two_concurrent_claims_lease_a_delivery_once(engine, hooked, submit):
    merchant, _ = hooked
    submit(merchant["merchant_id"], f.card_body(), enqueue=False)
    (d,) = deliveries_of(engine, merchant["merchant_id"])
    won: list = []
    with engine.connect() as first:
        tx = first.begin()
        won.append(webhooks.claim(bound(first), [d.id], lease_s=60))
        first_pid = first.execute(text("SELECT pg_backend_pid()")).scalar_one()

        def second():
            with engine.begin() as conn:
                won.append(webhooks.claim(bound(conn), [d.id], lease_s=60))

        def second_waits_on_first():
            with engine.connect() as conn:
                return conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE CAST(:p AS int) = ANY(pg_blocking_pids(pid))"
                    ),
                    {"p": first_pid},
                ).scalar_one()

        t = threading.Thread(target=second)
        t.start()
        # The second claim runs while the first holds the lease: it waits on
        # the row lock (or, should it not wait, has already finished).
        until(lambda: second_waits_on_first() or not t.is_alive(), timeout=10)
        tx.commit()
        t.join(10)
    assert [len(w) for w in won] == [1, 0]


def test_redeliver_makes_a_new_delivery_only_for_own_events(worker, hooked, make_merchant, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    other = make_merchant()["merchant_id"]
    with UnitOfWork(engine, dispatch) as uow:
        (event_id,) = ev.emit(uow, [(mid, "payment_intent.processing", "pi_x", {})])
        uow.commit()
    receiver.wait_for(lambda r: r.ids() == [event_id])
    with UnitOfWork(engine, dispatch) as uow:
        again = event_log.redeliver(uow, mid, event_id)
        uow.commit()
    receiver.wait_for(lambda r: r.ids() == [event_id, event_id])
    assert again.event_id == event_id and again.status == "pending"
    with engine.begin() as conn, pytest.raises(NotFound):
        event_log.redeliver(bound(conn), other, event_id)


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
    while any(d.status == "pending" for d in deliveries_of(engine, mid)):
        assert time.monotonic() < deadline, "attempts were not recorded"
        time.sleep(0.1)
    assert all((d.status, d.attempts) == ("succeeded", 1) for d in deliveries_of(engine, mid))


@pytest.mark.skipif(BROKER_IS_AMQP, reason="fills a Redis broker's lists by hand")
def test_the_dispatcher_stands_back_only_for_a_full_backlog(worker, hooked, engine, monkeypatch):
    """A prefetch's worth waiting (any priority list) holds due work back; one less does not."""
    import redis

    from tests.conftest import TEST_ENV
    from tests.support.services import PrivateRedis
    from workers import periodic
    from workers.celery_app import app

    merchant, receiver = hooked
    marker = _lost_event(engine, merchant["merchant_id"])
    broker = PrivateRedis()
    broker.start()
    try:
        client = redis.Redis(port=broker.port)
        monkeypatch.setattr(periodic, "_redis", lambda url: client)
        queue = TEST_ENV["REDIS_KEY_PREFIX"] + "notifications"
        full = periodic.backlog_max(app.runtime.settings)
        client.rpush(queue, *["m"] * (full - 1))
        client.rpush(queue + "\x06\x169", "m")  # a priority list counts too
        assert periodic.dispatch_webhooks.apply().get() == 0
        assert _delivery_of(engine, marker).attempts == 0
        client.lpop(queue)
        assert periodic.dispatch_webhooks.apply().get() >= 1
        receiver.wait_for(lambda r: marker in r.ids(), timeout=15)
    finally:
        broker.stop()
