"""Recovery claims of the pipeline, on the session's real worker, Postgres and Redis.

- a succeeded instant intent whose settle_instant message was lost is settled by the re-drive job;
- a database connection killed under a stage batch makes the batch retry, never fail;
- the hold-expiry job skips (does not wait for, does not void) a row a capture holds.
"""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import select, text

from shared.db.tables import ledger_transfers
from shared.db.tables import payment_intents as pi
from tests import factories as f
from tests.support.stages import drive_in_process
from tests.support.units import bound

# The pipeline through the broker: make test runs this module on RabbitMQ too.
pytestmark = [pytest.mark.integration, pytest.mark.broker]


def _transfers(engine, intent_id) -> list[tuple[str, str, int]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    ledger_transfers.c.kind, ledger_transfers.c.reason, ledger_transfers.c.amount
                )
                .where(ledger_transfers.c.intent_id == intent_id)
                .order_by(ledger_transfers.c.id)
            )
        ]


def _row(engine, intent_id):
    with engine.connect() as conn:
        return conn.execute(select(pi).where(pi.c.id == intent_id)).one()


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def test_a_lost_instant_settlement_is_redriven(
    worker, make_merchant, submit, engine, vault, books_balance
):
    from workers.periodic import redrive

    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    instant = submit(merchant, f.card_body(f.random_visa(rng), 1200, priority="instant"), False)
    standard = submit(merchant, f.card_body(f.random_visa(rng), 1300, priority="standard"), False)
    result = drive_in_process(engine, vault, [instant, standard])
    assert result.settle_now == [instant]  # the message that never reached the queue
    for intent_id in (instant, standard):
        row = _row(engine, intent_id)
        assert (row.status, row.settlement_status) == ("succeeded", "pending")
    # Older than REDRIVE_AFTER_S, as if the message had been lost a while ago.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE payment_intents SET finalized_at = now() - interval '1 minute'"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": [instant, standard]},
        )

    redrive.apply()  # beat's job, run here; the session worker settles what it sends
    row = _wait(
        lambda: (r := _row(engine, instant)).settlement_status == "settled" and r,
        20,
        "the re-driven instant settlement",
    )
    assert row.settlement_id is not None
    redrive.apply()  # a second run finds nothing left to re-drive for it
    net = row.amount_received - row.fee_amount
    _wait(lambda: _row(engine, instant).settled_at is not None, 5, "settled_at")
    settlements = [t for t in _transfers(engine, instant) if t[1] == "settlement"]
    assert settlements == [("posted", "settlement", net)]
    # Standard intents wait for their window: re-drive leaves them alone.
    assert _row(engine, standard).settlement_status == "pending"
    books_balance()


def test_a_connection_killed_mid_stage_is_retried_never_failed(
    worker, make_merchant, submit, engine
):
    from workers.celery_app import publish as dispatch

    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    ids = [submit(merchant, f.card_body(f.random_visa(rng), 900), enqueue=False) for _ in range(3)]
    log_from = len(worker.output())
    with engine.connect() as holder:
        tx = holder.begin()
        me = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # Hold the intents' rows, so the worker's limits batch stops inside its claim.
        holder.execute(select(pi.c.id).where(pi.c.id.in_(ids)).with_for_update())
        dispatch("limits", ids)

        def blocked_by_me():
            with engine.connect() as conn:
                return (
                    conn.execute(
                        text(
                            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                            " AND :me = ANY(pg_blocking_pids(pid))"
                        ),
                        {"me": me},
                    )
                    .scalars()
                    .all()
                )

        # Well inside the worker's lock_timeout (10 s).
        (victim,) = _wait(blocked_by_me, 8, "the worker's batch to wait on our locks")
        with engine.connect() as admin:
            assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": victim}).scalar()
        tx.rollback()
    rows = f.wait_until_final(engine, ids, timeout=30)
    outcomes = {(r.status, r.failure_code) for r in rows.values()}
    assert outcomes == {("succeeded", None)}, [
        (r.status, r.failure_code, r.failure_message) for r in rows.values()
    ]
    log = worker.output()[log_from:]
    # The whole batch went back on the queue; it was not taken apart intent by intent.
    assert "clearhouse.limits: transient error" in log and "retrying 3 ids" in log, log[-3000:]
    assert "isolating" not in log


def test_hold_expiry_skips_a_row_that_a_capture_holds(
    worker, make_merchant, submit, engine, books_balance
):
    from shared.db.uow import UnitOfWork
    from shared.services import intents
    from shared.services import maintenance as jobs
    from workers.celery_app import publish as dispatch

    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    # Another currency for the hold that is to expire: no ledger account in common
    # with the capture, whose transaction also holds its accounts' rows.
    captured, expired = (
        submit(merchant, f.card_body(f.random_visa(rng), 1000, capture_method="manual", **cur))
        for cur in ({}, {"currency": "EUR"})
    )
    rows = f.wait_until_final(engine, [captured, expired])
    assert {r.status for r in rows.values()} == {"requires_capture"}

    with UnitOfWork(engine, dispatch) as capture:
        # The capture's transaction starts now (Postgres' now() is its start time) ...
        capture.conn.execute(text("SELECT now()"))
        # ... and both holds run out just after, before the capture takes its row.
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE payment_intents SET hold_expires_at = now() WHERE id = ANY(:ids)"),
                {"ids": [captured, expired]},
            )
        done = intents.capture(capture, merchant, captured, None)
        assert done.status == "succeeded"  # not committed yet: the row stays locked

        # The expiry job meanwhile: its clock says both holds are past; one row is held.
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '3s'"))  # waiting would fail the test
            started = time.monotonic()
            voided = jobs.expire_holds(bound(conn))
            took = time.monotonic() - started
        assert expired in voided and captured not in voided
        assert took < 1.0, f"the expiry job waited {took:.2f}s for the captured row"
        capture.commit()

    with engine.begin() as conn:
        assert captured not in jobs.expire_holds(bound(conn))  # succeeded now: nothing to expire
    after = {i: _row(engine, i) for i in (captured, expired)}
    assert (after[captured].status, after[captured].amount_received) == ("succeeded", 1000)
    assert (after[expired].status, after[expired].cancellation_reason) == ("canceled", "expired")
    assert [t[0] for t in _transfers(engine, captured)] == ["pending", "post_pending", "posted"]
    assert [t[0] for t in _transfers(engine, expired)] == ["pending", "expire_pending"]
    books_balance()
