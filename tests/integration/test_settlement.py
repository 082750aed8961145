"""Settlement windows and settlement objects on real Postgres, Redis and a worker."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, text

from shared.db.tables import events, settlements
from shared.db.tables import payment_intents as pi
from tests import factories as f
from tests.conftest import TEST_ENV
from tests.support.waiting import broker_backlog

pytestmark = pytest.mark.integration
rng = random.Random()


def succeeded(submit, engine, merchant, priority, n, amount=1000) -> list[str]:
    ids = [
        submit(merchant, f.card_body(f.random_visa(rng), amount + i, priority=priority))
        for i in range(n)
    ]
    rows = f.wait_until_final(engine, ids)
    assert {r.status for r in rows.values()} == {"succeeded"}
    return ids


def wait_settled(engine, ids, timeout=30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(pi).where(pi.c.id.in_(ids)))}
        if all(r.settlement_status == "settled" for r in rows.values()):
            return rows
        assert time.monotonic() < deadline, "not settled in time"
        time.sleep(0.05)  # polling interval


def settlement_transfers(engine, ids) -> dict[str, list[int]]:
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT intent_id, amount FROM ledger_transfers"
                " WHERE intent_id = ANY(:ids) AND reason = 'settlement'"
            ),
            {"ids": list(ids)},
        ).all()
    out: dict[str, list[int]] = {}
    for intent_id, amount in found:
        out.setdefault(intent_id, []).append(amount)
    return out


def check_settled(engine, rows: dict, priority: str) -> None:
    """Settlement objects add up to the intents' nets; one settlement.paid each."""
    assert settlement_transfers(engine, rows) == {
        r.id: [r.amount_received - r.fee_amount] for r in rows.values()
    }
    with engine.connect() as conn:
        objects = conn.execute(
            select(settlements).where(
                settlements.c.id.in_({r.settlement_id for r in rows.values()})
            )
        ).all()
        paid = {
            e.object_id: e
            for e in conn.execute(
                select(events).where(events.c.object_id.in_([s.id for s in objects]))
            )
        }
    assert {s.priority for s in objects} == {priority}
    for s in objects:
        members = [r for r in rows.values() if r.settlement_id == s.id]
        assert s.merchant_id == members[0].merchant_id
        assert s.intent_count >= len(members)
        assert paid[s.id].type == "settlement.paid"
        data = paid[s.id].data
        assert data["id"] == s.id and data["object"] == "settlement"
        assert (data["amount"], data["intent_count"], data["priority"]) == (
            s.amount,
            s.intent_count,
            priority,
        )
    mine = [s for s in objects if s.merchant_id in {r.merchant_id for r in rows.values()}]
    assert sum(s.amount for s in mine) >= sum(
        r.amount_received - r.fee_amount for r in rows.values()
    )


@pytest.mark.parametrize("priority", ["standard", "economy"])
def test_window_settles_due_intents_into_settlement_objects(
    priority, worker, make_merchant, submit, engine, books_balance
):
    from workers import periodic

    window = {"standard": periodic.settle_standard, "economy": periodic.settle_economy}
    other = "economy" if priority == "standard" else "standard"
    merchants = [make_merchant()["merchant_id"] for _ in range(2)]
    ids = [i for m in merchants for i in succeeded(submit, engine, m, priority, 3)]
    untouched = succeeded(submit, engine, merchants[0], other, 1)
    assert window[priority]() >= len(ids)  # run by beat on maintenance; batches go to the worker
    rows = wait_settled(engine, ids)
    check_settled(engine, rows, priority)
    with engine.connect() as conn:
        objects = conn.execute(
            select(settlements).where(settlements.c.merchant_id.in_(merchants))
        ).all()
    # Usually one settlement per merchant; batches may split a window's ids in two,
    # and then the settlements add up to the same intents and amounts.
    for m in merchants:
        mine = [r for r in rows.values() if r.merchant_id == m]
        theirs = [o for o in objects if o.merchant_id == m]
        assert {r.settlement_id for r in mine} == {o.id for o in theirs}
        assert sum(o.intent_count for o in theirs) == 3
        assert sum(o.amount for o in theirs) == sum(r.amount_received - r.fee_amount for r in mine)
    with engine.connect() as conn:
        left = conn.execute(select(pi.c.settlement_status).where(pi.c.id == untouched[0]))
        assert left.scalar_one() == "pending"
    books_balance()


def test_racing_window_runs_and_duplicates_never_settle_twice(
    worker, make_merchant, submit, engine, books_balance
):
    from shared.db.uow import UnitOfWork
    from shared.services.stages import settlement

    merchant = make_merchant()["merchant_id"]
    ids = succeeded(submit, engine, merchant, "economy", 6)

    def run(_):
        with UnitOfWork(engine) as u:
            done = settlement.settle(u, ids, skip_locked=True)
            u.commit()
        return done

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(8)))
    assert sorted(i for r in results for i in r) == sorted(ids)
    assert run(0) == []  # a redelivered batch finds nothing left
    rows = wait_settled(engine, ids)
    check_settled(engine, rows, "economy")
    books_balance()


def _economy_waiting(redis_client) -> int:
    """Messages waiting in settlement.economy, on either broker."""
    return broker_backlog(redis_client, TEST_ENV["REDIS_KEY_PREFIX"], ["settlement.economy"])[0]


@pytest.mark.broker
def test_instant_settles_while_a_big_economy_backlog_waits(
    worker, make_merchant, submit, engine, redis_client, books_balance
):
    """Economy work waits on its own queue; instant settlement never queues behind it.

    In production they are different workers; here one worker stops consuming
    settlement.economy (as if its pool were saturated) and instant still settles.
    """
    from workers.celery_app import app
    from workers.periodic import settle_economy

    merchant = make_merchant()["merchant_id"]
    economy = succeeded(submit, engine, merchant, "economy", 20)
    replies = app.control.cancel_consumer("settlement.economy", reply=True, timeout=5)
    assert replies, "the worker did not answer"
    try:
        settle_economy()
        backlog = [economy[i : i + 2] for i in range(0, len(economy), 2)] * 100
        for batch in backlog:  # a big window: 1,000 messages waiting
            app.send_task("clearhouse.settle_window", args=[batch], queue="settlement.economy")
        assert _economy_waiting(redis_client) >= len(backlog)
        start = time.monotonic()
        instant = succeeded(submit, engine, merchant, "instant", 5)
        wait_settled(engine, instant, timeout=15)
        assert time.monotonic() - start < 15
        assert _economy_waiting(redis_client) >= len(backlog)  # untouched meanwhile
        with engine.connect() as conn:
            pending = conn.execute(select(pi.c.settlement_status).where(pi.c.id.in_(economy)))
            assert set(pending.scalars()) == {"pending"}
    finally:
        app.control.add_consumer("settlement.economy", reply=True, timeout=5)
    wait_settled(engine, economy, timeout=60)
    deadline = time.monotonic() + 60
    while _economy_waiting(redis_client):
        assert time.monotonic() < deadline, "economy backlog not drained"
        time.sleep(0.2)  # polling interval
    check_settled(engine, wait_settled(engine, economy), "economy")
    books_balance()


def test_windows_run_on_maintenance_and_settle_off_the_instant_queue(engine, make_merchant, submit):
    from shared.db.uow import UnitOfWork
    from shared.services import maintenance
    from workers.celery_app import app
    from workers.schedule import beat_schedule
    from workers.topology import STEPS

    schedule = beat_schedule(app.runtime.settings)
    for entry in ("settle-standard-window", "settle-economy-window"):
        route = app.amqp.router.route({}, schedule[entry]["task"])
        assert route["queue"].name == "maintenance"
    assert STEPS["settle_instant"].queue == "settlement.instant"
    sent = []
    merchant = make_merchant()["merchant_id"]
    succeeded(submit, engine, merchant, "economy", 1)
    succeeded(submit, engine, merchant, "standard", 1)
    for priority in ("economy", "standard"):
        with UnitOfWork(engine, lambda step, ids, countdown=None: sent.append(step)) as uow:
            maintenance.open_window(uow, priority)
            uow.commit()
    assert [STEPS[step].queue for step in sent] == ["settlement.economy", "settlement.standard"]
    assert {STEPS[step].task for step in sent} == {"clearhouse.settle_window"}
    # The production topology: the instant worker consumes the instant lane and
    # instant settlement, nothing else (no shared stage queue, no window).
    from workers.topology import INSTANT_QUEUES

    procfile = (Path(__file__).resolve().parents[2] / "deploy/Procfile").read_text()
    instant = next(line for line in procfile.splitlines() if line.startswith("worker_instant:"))
    assert f" -Q {','.join(INSTANT_QUEUES)} " in instant
