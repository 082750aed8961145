"""The pipeline on real Postgres, Redis and a real Celery worker process."""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import func, select, text

from shared.db.tables import ledger_transfers, limit_counters
from shared.db.tables import payment_intents as pi
from tests import factories as f
from tests.conftest import BROKER_IS_AMQP, TEST_ENV, wipe_redis
from tests.support.units import bound
from tests.support.waiting import drain, messages_run, until

# The pipeline through the broker: make test runs this module on RabbitMQ too.
pytestmark = [pytest.mark.integration, pytest.mark.broker]


def _transfers(engine, intent_id):
    with engine.connect() as conn:
        return conn.execute(
            select(ledger_transfers.c.kind, ledger_transfers.c.reason, ledger_transfers.c.amount)
            .where(ledger_transfers.c.intent_id == intent_id)
            .order_by(ledger_transfers.c.id)
        ).all()


def _counters(engine, merchant_id):
    with engine.connect() as conn:
        return dict(
            conn.execute(
                select(limit_counters.c.key, limit_counters.c.used).where(
                    limit_counters.c.key.like(f"%{merchant_id}%")
                )
            ).all()
        )


def _drain(redis_client, timeout=30):
    """Wait until every message sent so far has run: none queued, none delivered but unacked."""
    from workers.topology import QUEUES

    drain(redis_client, TEST_ENV["REDIS_KEY_PREFIX"], QUEUES, timeout)


def test_every_test_card_reaches_its_outcome_and_the_books_balance(
    worker, make_merchant, submit, engine, books_balance
):
    merchant = make_merchant()["merchant_id"]
    log_start = len(worker.output())
    expected = f.OUTCOMES
    ids = {}
    for number in expected:
        for priority in ("instant", "standard", "economy"):
            ids[submit(merchant, f.card_body(number, 1500, priority=priority))] = number
    rows = f.wait_until_final(engine, list(ids))
    for intent_id, number in ids.items():
        row = rows[intent_id]
        assert (row.status, row.failure_code) == expected[number], (number, row.failure_message)
        if row.status == "succeeded":
            assert row.amount_received == 1500
            assert row.fee_amount > 0
    settled = f.wait_until_final(
        engine,
        [i for i, n in ids.items() if n == f.APPROVE and rows[i].priority == "instant"],
        final={"succeeded"},
    )
    deadline = time.monotonic() + 10
    while any(r.settlement_status != "settled" for r in settled.values()):
        assert time.monotonic() < deadline, "instant intents were not settled"
        time.sleep(0.1)
        settled = f.wait_until_final(engine, list(settled), final={"succeeded"})
    books_balance()
    # Healthy batches never fall back to one-by-one isolation (slow, and a bug).
    assert "isolating" not in worker.output()[log_start:]


def test_processing_error_is_retried_then_fails_releasing_hold_and_limits(
    worker, make_merchant, submit, engine, books_balance
):
    merchant = make_merchant()["merchant_id"]
    intent_id = submit(merchant, f.card_body(f.PROCESSING_ERROR, 2500))
    row = f.wait_until_final(engine, [intent_id])[intent_id]
    assert row.status == "failed" and row.failure_code == "processing_error"
    assert row.auth_attempts == 2  # three tries: two recorded retries, then the failure
    assert row.limit_reserved == 0
    kinds = [t.kind for t in _transfers(engine, intent_id)]
    assert kinds == ["pending", "void_pending"]
    assert set(_counters(engine, merchant).values()) == {0}
    books_balance()


def test_duplicate_deliveries_change_nothing(
    worker, make_merchant, submit, engine, redis_client, books_balance
):
    from workers.celery_app import publish as dispatch
    from workers.topology import STEPS

    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    ids = [
        submit(merchant, f.card_body(f.random_visa(rng), 700, priority="instant")) for _ in range(3)
    ]
    f.wait_until_final(engine, ids)
    _drain(redis_client)  # instant settlement too, which runs after `succeeded`
    before = ({i: _transfers(engine, i) for i in ids}, _counters(engine, merchant))
    with engine.connect() as conn:
        rows_before = conn.execute(select(pi).where(pi.c.id.in_(ids)).order_by(pi.c.id)).all()
    steps = ("limits", "fraud", "fees", "authorize", "settle_instant")
    tasks = [STEPS[step].task for step in steps]
    log_start = len(worker.output())
    for _ in range(2):  # every stage's message, delivered again, twice
        for step in steps:
            dispatch(step, ids)

    def ran():
        return messages_run(worker.output()[log_start:])

    # The worker ran every duplicate (it logs each batch with its message count)...
    until(lambda: all(ran()[t] >= 2 for t in tasks), what=lambda: f"the duplicates to run: {ran()}")
    _drain(redis_client)
    # ... and they handed nothing on: no stage ran a message beyond those ten.
    assert {t: ran()[t] for t in tasks} == {t: 2 for t in tasks}
    after = ({i: _transfers(engine, i) for i in ids}, _counters(engine, merchant))
    with engine.connect() as conn:
        rows_after = conn.execute(select(pi).where(pi.c.id.in_(ids)).order_by(pi.c.id)).all()
    assert after == before
    assert [r._asdict() for r in rows_after] == [r._asdict() for r in rows_before]
    books_balance()


def test_two_racing_deliveries_of_one_stage_advance_an_intent_once(make_merchant, submit, engine):
    """Two real transactions run the limits stage on the same ids at once."""
    from concurrent.futures import ThreadPoolExecutor

    from shared.db.uow import UnitOfWork
    from shared.services.stages import limits

    merchant = make_merchant()["merchant_id"]
    ids = [submit(merchant, f.card_body(amount=300), enqueue=False) for _ in range(20)]

    def deliver(_):
        with UnitOfWork(engine) as u:
            result = limits.run(u, ids)
            u.commit()
        return result.advanced

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(deliver, range(4)))
    advanced = [i for r in results for i in r]
    assert sorted(advanced) == sorted(ids)  # each id advanced by exactly one delivery
    counters = _counters(engine, merchant)
    assert max(counters.values()) == 300 * 20


def test_fifty_concurrent_intents_never_overshoot_a_daily_limit(make_merchant, submit, engine):
    """50 transactions race, 20 at a time, for a daily limit that fits exactly 10 of them.

    20, not 50, connections at once: make test runs two pytest processes, and the
    other one's stack (API, workers, relay, beat) shares Postgres's 100 slots.
    """
    from concurrent.futures import ThreadPoolExecutor

    from shared.db.uow import UnitOfWork
    from shared.services import merchants
    from shared.services.stages import limits

    merchant = make_merchant()["merchant_id"]
    with UnitOfWork(engine) as u:
        merchants.set_limits(u, merchant, "USD", "merchant", daily=10 * 1000)
        u.commit()
    rng = random.Random(7)
    ids = [
        submit(merchant, f.card_body(f.random_visa(rng), 1000), enqueue=False) for _ in range(50)
    ]

    def deliver(intent_id):
        with UnitOfWork(engine) as u:
            result = limits.run(u, [intent_id])
            u.commit()
        return result

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(deliver, ids))
    assert sum(len(r.advanced) for r in results) == 10
    assert sum(len(r.failed) for r in results) == 40
    with engine.connect() as conn:
        failed = conn.execute(
            select(func.count()).where(
                pi.c.id.in_(ids), pi.c.status == "failed", pi.c.failure_code == "limit_exceeded"
            )
        ).scalar_one()
    assert failed == 40
    daily = [v for k, v in _counters(engine, merchant).items() if k.startswith("m:") and ":d:" in k]
    assert daily == [10 * 1000]


def test_limits_through_the_worker_never_overshoot(worker, make_merchant, submit, engine):
    from shared.db.uow import UnitOfWork
    from shared.services import merchants

    merchant = make_merchant()["merchant_id"]
    with UnitOfWork(engine) as u:
        merchants.set_limits(u, merchant, "USD", "merchant", daily=10 * 1000)
        u.commit()
    rng = random.Random(11)
    ids = [submit(merchant, f.card_body(f.random_visa(rng), 1000)) for _ in range(50)]
    rows = f.wait_until_final(engine, ids)
    statuses = [r.status for r in rows.values()]
    assert statuses.count("succeeded") == 10
    assert {r.failure_code for r in rows.values() if r.status == "failed"} == {"limit_exceeded"}


def test_wallet_never_goes_below_zero(
    worker, make_merchant, funded_wallet, submit, engine, books_balance
):
    from shared.db.uow import UnitOfWork
    from shared.services import merchants

    merchant = make_merchant()["merchant_id"]
    wallet = funded_wallet(5000)
    ids = [submit(merchant, f.wallet_body(wallet, 1000)) for _ in range(8)]
    rows = f.wait_until_final(engine, ids)
    outcomes = sorted((r.status, r.failure_code) for r in rows.values())
    assert outcomes.count(("succeeded", None)) == 5
    assert outcomes.count(("failed", "insufficient_funds")) == 3
    with UnitOfWork(engine) as u:
        assert merchants.wallet_balance(u, wallet) == 0
    books_balance()


def test_manual_capture_partial_releases_the_rest_and_cancel_voids(
    worker, make_merchant, submit, engine, books_balance
):
    from shared.db.uow import UnitOfWork
    from shared.services import intents

    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    first = submit(merchant, f.card_body(f.random_visa(rng), 1000, capture_method="manual"))
    second = submit(merchant, f.card_body(f.random_visa(rng), 400, capture_method="manual"))
    rows = f.wait_until_final(engine, [first, second])
    assert rows[first].status == rows[second].status == "requires_capture", (
        rows[first].failure_message,
        rows[first].risk_reasons,
    )
    assert rows[first].amount_capturable == 1000
    with UnitOfWork(engine) as u:
        captured = intents.capture(u, merchant, first, 600)
        canceled = intents.cancel(u, merchant, second, None)
        u.commit()
    assert (captured.status, captured.amount_received, captured.amount_capturable) == (
        "succeeded",
        600,
        0,
    )
    assert captured.limit_reserved == 600
    assert canceled.status == "canceled" and canceled.limit_reserved == 0
    assert [t.kind for t in _transfers(engine, first)] == ["pending", "post_pending", "posted"]
    assert [t.kind for t in _transfers(engine, second)] == ["pending", "void_pending"]
    books_balance()


def test_losing_every_redis_key_loses_no_payment(
    worker, make_merchant, submit, engine, redis_client, books_balance
):
    """Intents whose messages vanished are found in Postgres and re-driven."""
    from shared.services import maintenance as jobs
    from shared.services.maintenance import STAGE_STEP
    from workers.celery_app import publish as dispatch

    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    lost = [
        submit(merchant, f.card_body(f.random_visa(rng), 900), enqueue=False) for _ in range(10)
    ]
    # As if Redis restarted without persistence (on RabbitMQ, Redis holds no
    # message: enqueue=False lost them all the same).
    assert wipe_redis(redis_client) > 0 or BROKER_IS_AMQP
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE payment_intents SET stage_changed_at = now() - interval '1 hour'"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": lost},
        )
        stuck = jobs.stuck_intents(bound(conn), 60)
    assert set(lost) <= {i for ids in stuck.values() for i in ids}
    for stage, ids in stuck.items():
        dispatch(STAGE_STEP[stage], ids)
    rows = f.wait_until_final(engine, lost)
    assert {r.status for r in rows.values()} == {"succeeded"}
    books_balance()


def test_redrive_backs_off_an_intent_that_is_only_lagging(make_merchant, submit, engine):
    """A re-driven intent is sent again only after it waited as long again (capped).

    Without the back-off every pass re-sent every intent older than
    REDRIVE_AFTER_S: a stage that lagged got a copy of each id per pass.
    Times are in units of ``after`` (longer than any other test's rows wait).
    """
    from shared.services import maintenance as jobs

    after = 20_000
    intent = submit(make_merchant()["merchant_id"], f.card_body(f.new_card(), 700), enqueue=False)

    def redriven(stage_age: float, redriven_age: float | None) -> bool:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE payment_intents SET"
                    " stage_changed_at = now() - make_interval(secs => :stage),"
                    " redriven_at = now() - make_interval(secs => :redriven)"
                    " WHERE id = :id"
                ),
                {"stage": stage_age, "redriven": redriven_age, "id": intent},
            )
            stuck = jobs.stuck_intents(bound(conn), after)
        return intent in {i for ids in stuck.values() for i in ids}

    assert not redriven(0.5 * after, None)  # not stuck yet
    assert redriven(1.5 * after, None)
    with engine.begin() as conn:  # at once again: it was just sent
        assert intent not in {
            i for ids in jobs.stuck_intents(bound(conn), after).values() for i in ids
        }
    # Sent when it had waited 1 x after: due 1 x after later, not before.
    assert redriven(2.25 * after, 1.25 * after)
    assert not redriven(2.75 * after, 0.75 * after)
    # Sent when it had waited 1.5 x after: due 1.5 x after later.
    assert not redriven(2.75 * after, 1.25 * after)
    # Long waits are capped: sent again every REDRIVE_BACKOFF_CAP x after at most.
    cap = jobs.REDRIVE_BACKOFF_CAP * after
    assert redriven(50 * after, cap + 0.25 * after)
    assert not redriven(50 * after, cap - 0.25 * after)


def test_one_broken_intent_does_not_hold_back_its_batch(worker, make_merchant, submit, engine):
    from workers.celery_app import publish as dispatch

    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    good = [submit(merchant, f.card_body(f.random_visa(rng), 800), enqueue=False) for _ in range(4)]
    broken = submit(merchant, f.card_body(f.random_visa(rng), 800), enqueue=False)
    with engine.begin() as conn:  # data no code path can produce: an unknown currency
        conn.execute(
            text("UPDATE payment_intents SET currency = 'XXX' WHERE id = :i"), {"i": broken}
        )
    dispatch("limits", [*good[:2], broken, *good[2:]])  # one message, one batch
    rows = f.wait_until_final(engine, [*good, broken])
    assert {rows[i].status for i in good} == {"succeeded"}
    assert (rows[broken].status, rows[broken].failure_code) == ("failed", "processing_error")


def test_the_relay_enqueues_only_committed_intents(worker, make_merchant, submit, engine, vault):
    """Invariant 4: a worker never sees an intent before its row is committed."""
    from datetime import date

    from shared.db.uow import UnitOfWork
    from shared.domain.validation import validate_create
    from shared.services import intents

    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    req = validate_create(f.card_body(f.random_visa(rng), 600), date.today())
    log_start = len(worker.output())
    with UnitOfWork(engine) as u:
        held = intents.create(u, vault, merchant, req, client_ip=None, request_id=None).id
        # An intent committed after `held` was inserted goes through the relay
        # and the whole pipeline: the relay has completed passes (claimed,
        # published) while `held` sat in the database, inserted and uncommitted.
        later = submit(merchant, f.card_body(f.random_visa(rng), 600))
        first = f.wait_until_final(engine, [later])[later]
        assert first.status == "succeeded" and first.enqueued_at is not None
        assert later in worker.output()[log_start:]  # the worker's log names what it ran
        # Those passes left `held` alone: not marked as sent, and no task ran on it.
        enqueued = u.conn.execute(select(pi.c.enqueued_at).where(pi.c.id == held)).scalar_one()
        assert enqueued is None
        assert held not in worker.output()[log_start:], "a worker ran an uncommitted intent"
        with engine.connect() as other:
            assert other.execute(select(pi.c.id).where(pi.c.id == held)).first() is None
        u.commit()
    # Once committed, the relay sends it on and the worker runs it.
    row = f.wait_until_final(engine, [held])[held]
    assert row.status == "succeeded" and row.enqueued_at is not None
    assert row.created_at < first.created_at and row.enqueued_at > first.enqueued_at
    until(lambda: held in worker.output()[log_start:], what="the worker to log the intent")
