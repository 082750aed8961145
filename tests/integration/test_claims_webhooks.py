"""Webhook claims through real workers: the URL policy at send time, lost first attempts."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.services import events as ev
from tests.conftest import TEST_ENV
from tests.support import brokers, processes
from tests.support.webhooks import attempts_of, deliveries_of

pytestmark = pytest.mark.integration

# The strict worker's own queues: no other worker of the session takes its messages.
STRICT_PREFIX = TEST_ENV["REDIS_KEY_PREFIX"] + "strict-urls:"


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)
    return value


def test_a_url_allowed_when_configured_is_refused_at_send_time(
    database, redis_client, settings, hooked, engine
):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    # The URL was accepted when it was stored (this session allows loopback
    # URLs); the worker that sends runs with the production policy.
    queues_env = brokers.private_env(STRICT_PREFIX)
    env = {**queues_env, "WEBHOOK_ALLOW_PRIVATE": "false"}
    producer = brokers.producer("strict-producer", queues_env)

    def to_strict_worker(step: str, ids: list[str], countdown=None) -> None:
        assert step == "deliver_webhooks"
        producer.send_task("clearhouse.deliver_webhooks", args=[list(ids)], queue="notifications")

    try:
        with processes.celery_worker("strict-urls", queues="notifications", env=env):
            with UnitOfWork(engine, to_strict_worker) as u:
                (event_id,) = ev.emit(u, [(mid, "settlement.paid", "st_refused", {})])
                u.commit()
            (delivery,) = deliveries_of(engine, mid)
            assert delivery.url == receiver.url and delivery.event_id == event_id
            (attempt,) = _wait(lambda: attempts_of(engine, delivery.id), 30, "the first attempt")
        assert attempt.outcome == "failed" and attempt.status_code is None
        assert attempt.error.startswith("refused: "), attempt.error
        (delivery,) = deliveries_of(engine, mid)
        assert (delivery.attempts, delivery.last_error) == (1, attempt.error)
        assert receiver.hits == {}  # nothing left the worker for that address
    finally:
        producer.close()
        # Its retries are due within milliseconds (scaled schedule): keep any
        # later dispatcher of this session (which allows loopback) off them.
        with engine.begin() as conn:
            conn.execute(update(wd).where(wd.c.merchant_id == mid).values(status="failed"))


def test_a_lost_first_attempt_is_sent_by_the_dispatcher_after_its_grace(worker, hooked, engine):
    merchant, receiver = hooked
    mid = merchant["merchant_id"]
    with UnitOfWork(engine) as u:  # no dispatcher: the first attempt's message is lost
        (event_id,) = ev.emit(u, [(mid, "settlement.paid", "st_lost", {})])
        u.commit()
    (delivery,) = deliveries_of(engine, mid)
    created = delivery.created_at.timestamp()
    beat_env = {"WEBHOOK_DISPATCH_INTERVAL_S": "0.3", "BEAT_LOCK_TIMEOUT_S": "3"}
    with processes.celery_beat(beat_env) as beat:
        receiver.wait_for(lambda r: event_id in r.ids(), timeout=30)
        got = next(x for x in receiver.received if x.event["id"] == event_id)
        _wait(
            lambda: deliveries_of(engine, mid)[0].status == "succeeded", 10, "the attempt recorded"
        )
        assert "Sending due task dispatch-due-webhooks" in beat.output()
    waited = got.received_at - created
    # Not before the grace the after-commit message is given (5 s), and soon after.
    assert 4.9 <= waited <= 15, f"sent {waited:.1f}s after the event"
    assert receiver.ids() == [event_id] and got.verified_with == [0]
    (delivery,) = deliveries_of(engine, mid)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
