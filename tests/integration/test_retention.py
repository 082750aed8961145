"""Retention for real: card tokens purged, events, deliveries, attempts and keys pruned.

The jobs run against the layer's shared database, so each test backdates
only its own rows and checks only those (the jobs may take other tests' old
rows too: that is what they are for). The last test runs them the way
production does: the real beat sending each job to the real worker.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text, update

from shared.config import Settings
from shared.db.tables import (
    beat_job_runs,
    daily_reports,
    events,
    idempotency_keys,
    ledger_transfers,
    payment_intents,
    webhook_attempts,
    webhook_deliveries,
)
from shared.db.uow import UnitOfWork
from shared.services import refunds, reports, retention, views
from tests import factories as f
from tests.support import processes
from tests.support.stages import drive_in_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DAY = "interval '1 day'"


def _backdate(engine, ids, days: int, column: str = "finalized_at") -> None:
    with engine.begin() as conn:
        conn.execute(
            update(payment_intents)
            .where(payment_intents.c.id.in_(ids))
            .values({column: func.now() - text(f"{int(days)} * {DAY}")})
        )


def _drain(engine, job, *args) -> int:
    """Run ``job`` in batches of one, each its own transaction, until a batch is empty."""
    total = 0
    while True:
        with UnitOfWork(engine) as u:
            n = job(u, *args, 1)
            u.commit()
        total += n
        if n == 0:
            return total


def _rows(engine, ids) -> dict:
    with engine.connect() as conn:
        found = conn.execute(select(payment_intents).where(payment_intents.c.id.in_(ids)))
        return {r.id: r for r in found}


def _report_rows(engine, merchant_id: str) -> list:
    """Today's report rows of one merchant, built now (rolled back: no other test sees them)."""
    with UnitOfWork(engine) as u:
        reports.run_daily(u, datetime.now(UTC).date())
        rows = u.conn.execute(
            select(daily_reports).where(daily_reports.c.merchant_id == merchant_id)
        ).all()
    return [tuple(r._mapping[c] for c in r._mapping if c != "created_at") for r in rows]


def _transfers(engine, ids) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(ledger_transfers)
            .where(ledger_transfers.c.intent_id.in_(ids))
            .order_by(ledger_transfers.c.id)
        ).all()


def test_card_data_is_purged_only_from_intents_final_long_enough(
    make_merchant, submit, engine, vault, books_balance
):
    merchant = make_merchant()["merchant_id"]
    paid = submit(merchant, f.card_body(amount=1200, priority="standard"), enqueue=False)
    declined = submit(merchant, f.card_body("4000000000000002", 800), enqueue=False)
    held = submit(merchant, f.card_body(amount=900, capture_method="manual"), enqueue=False)
    recent = submit(merchant, f.card_body(amount=700), enqueue=False)
    waiting = submit(merchant, f.card_body(amount=600), enqueue=False)
    drive_in_process(engine, vault, [paid, declined, held, recent])
    rows = f.wait_until_final(engine, [paid, declined, held, recent])
    assert (rows[paid].status, rows[declined].status) == ("succeeded", "failed")
    assert rows[held].status == "requires_capture"
    # Final (or held, or still processing) for 31 days, but for `recent`.
    _backdate(engine, [paid, declined, held, waiting], 31)
    _backdate(engine, [waiting], 31, "stage_changed_at")
    every = [paid, declined, held, recent, waiting]
    before = {i: views.intent_json(r) for i, r in _rows(engine, every).items()}
    report = _report_rows(engine, merchant)
    transfers = _transfers(engine, every)

    assert _drain(engine, retention.purge_card_data, 30) >= 2
    after = _rows(engine, every)
    assert after[paid].card_token is None and after[declined].card_token is None
    # A hold may still be captured, a processing intent still needs authorizing,
    # a recent one is inside the retention: each keeps its token.
    for kept in (held, recent, waiting):
        assert vault.decrypt(after[kept].card_token, aad=kept)
    # Brand, last4, expiry, fingerprint stay: it polls, lists and reports as before.
    assert {i: views.intent_json(r) for i, r in after.items()} == before
    assert _report_rows(engine, merchant) == report
    assert _transfers(engine, every) == transfers
    # A refund goes by the intent, never the card number: it still works.
    with UnitOfWork(engine) as u:
        refunds.create(u, merchant, _refund(paid, 200), None)
        u.commit()
    assert _rows(engine, [paid])[paid].amount_refunded == 200
    books_balance()


def _refund(intent_id: str, amount: int):
    from shared.domain.refunds import validate_create

    return validate_create({"payment_intent": intent_id, "amount": amount})


def _event(conn, merchant: str, days: int, delivery: str | None, attempts_days=()) -> str:
    """An event ``days`` old; with ``delivery`` (a status) one delivery and its attempts."""
    event_id = f"evt_{secrets.token_hex(12)}"
    age = func.now() - text(f"{int(days)} * {DAY}")
    conn.execute(
        insert(events).values(
            id=event_id,
            merchant_id=merchant,
            type="settlement.paid",
            object_id="st_x",
            data={},
            created_at=age,
        )
    )
    if delivery is not None:
        delivery_id = f"whd_{secrets.token_hex(12)}"
        conn.execute(
            insert(webhook_deliveries).values(
                id=delivery_id,
                event_id=event_id,
                merchant_id=merchant,
                url="http://127.0.0.1:9/hooks",
                status=delivery,
                # A pending one's retry is far off: no dispatcher sends it meanwhile.
                next_attempt_at=func.now() + text(DAY) if delivery == "pending" else None,
                created_at=age,
            )
        )
        for n, attempt_days in enumerate(attempts_days, 1):
            conn.execute(
                insert(webhook_attempts).values(
                    delivery_id=delivery_id,
                    attempt=n,
                    status_code=500,
                    response_body="echo",
                    outcome="failed",
                    created_at=func.now() - text(f"{int(attempt_days)} * {DAY}"),
                )
            )
    return event_id


def _left(engine, event_ids) -> dict:
    """event id -> (deliveries, attempts) still there; absent: the event is gone."""
    with engine.connect() as conn:
        found = conn.execute(select(events.c.id).where(events.c.id.in_(event_ids))).scalars()
        out = {}
        for event_id in found:
            deliveries = select(webhook_deliveries.c.id).where(
                webhook_deliveries.c.event_id == event_id
            )
            out[event_id] = (
                conn.execute(select(func.count()).select_from(deliveries.subquery())).scalar(),
                conn.execute(
                    select(func.count()).where(webhook_attempts.c.delivery_id.in_(deliveries))
                ).scalar(),
            )
        return out


def test_events_go_with_their_deliveries_and_attempts_unless_one_is_still_pending(engine):
    merchant = f"mch_{secrets.token_hex(6)}"
    with engine.begin() as conn:
        done = _event(conn, merchant, 91, "succeeded", (91, 91))
        failed = _event(conn, merchant, 91, "failed", (91,))
        pending = _event(conn, merchant, 91, "pending", (2,))
        bare = _event(conn, merchant, 91, None)
        young = _event(conn, merchant, 89, "succeeded", (31, 29))
    everything = [done, failed, pending, bare, young]

    assert _drain(engine, retention.prune_events, 90) >= 3
    # A delivery still retrying keeps its event (its body is built from it).
    assert _left(engine, everything) == {pending: (1, 1), young: (1, 2)}

    assert _drain(engine, retention.prune_webhook_attempts, 30) >= 1
    assert _left(engine, everything) == {pending: (1, 1), young: (1, 1)}


def test_idempotency_keys_are_pruned_in_batches_past_the_floor(engine):
    merchant = f"mch_{secrets.token_hex(6)}"
    with engine.begin() as conn:
        for hours in (23, 25, 26, 30):
            conn.execute(
                insert(idempotency_keys).values(
                    merchant_id=merchant,
                    key=f"k{hours}",
                    request_method="POST",
                    request_path="/v1/payment_intents",
                    request_hash="0" * 64,
                    response_status=202,
                    response_body={},
                    created_at=func.now() - text(f"interval '{hours} hours'"),
                )
            )
    # A retention under 24 h is floored where the job reads it, too.
    assert _drain(engine, retention.prune_idempotency_keys, 1) >= 3
    with engine.connect() as conn:
        keys = conn.execute(
            select(idempotency_keys.c.key).where(idempotency_keys.c.merchant_id == merchant)
        ).scalars()
        assert list(keys) == ["k23"]


PLANS = {
    "purge": (retention._PURGE_CARDS, "ix_intents_card_purge"),
    "attempts": (retention._PRUNE_ATTEMPTS, "ix_attempts_created"),
    "events": (retention._PRUNE_EVENTS, "ix_events_created"),
    "keys": (retention._PRUNE_KEYS, "ix_idempotency_created"),
}


@pytest.mark.parametrize("statement, index", PLANS.values(), ids=PLANS.keys())
def test_each_job_finds_its_rows_through_its_index(engine, statement, index):
    # On this small database the planner might scan anyway; with scans made
    # dear, a plan without the index would mean there is no index to use.
    with engine.connect() as conn:  # rolled back on leaving: SET LOCAL ends with it
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(
                text(f"EXPLAIN {statement.text}"), {"days": 30, "hours": 24, "n": 1000}
            ).scalars()
        )
    assert index in plan, plan


def test_a_full_batch_sends_the_next_one_and_a_short_one_does_not(engine, make_merchant, submit):
    from workers import periodic

    merchant = make_merchant()["merchant_id"]
    ids = [submit(merchant, f.card_body(), enqueue=False) for _ in range(2)]
    with engine.begin() as conn:
        conn.execute(
            update(payment_intents)
            .where(payment_intents.c.id.in_(ids))
            .values(status="failed", finalized_at=func.now() - text(f"40 * {DAY}"))
        )

    class OneAtATime:
        settings = Settings(retention_batch=1)

    sent = []
    publish = lambda step, ids, countdown=None: sent.append((step, ids))  # noqa: E731
    while True:
        with UnitOfWork(engine, publish) as u:
            before = len(sent)
            n = periodic._batch(OneAtATime, u, "purge_card_data", retention.purge_card_data, 30)
            u.commit()
        assert sent[before:] == ([("purge_card_data", ["more"])] if n else [])
        if not n:
            break
    assert all(r.card_token is None for r in _rows(engine, ids).values())


RETENTION_BEAT = {"RETENTION_INTERVAL_S": "1", "BEAT_LOCK_TIMEOUT_S": "3"}
JOBS = ("purge-card-data", "prune-webhook-attempts", "prune-events", "prune-idempotency-keys")


def test_the_real_beat_runs_every_retention_job_on_the_worker(
    worker, engine, make_merchant, submit, vault
):
    merchant = make_merchant()["merchant_id"]
    intent = submit(merchant, f.card_body(), enqueue=False)
    drive_in_process(engine, vault, [intent])
    f.wait_until_final(engine, [intent])
    _backdate(engine, [intent], 31)
    with engine.begin() as conn:
        old_event = _event(conn, merchant, 91, "succeeded", (91,))
        young_event = _event(conn, merchant, 1, "failed", (31,))
        conn.execute(
            insert(idempotency_keys).values(
                merchant_id=merchant,
                key="old",
                request_method="POST",
                request_path="/v1/payment_intents",
                request_hash="0" * 64,
                created_at=func.now() - text("interval '25 hours'"),
            )
        )
    started = datetime.now(UTC)

    def done() -> bool:
        with engine.connect() as conn:
            key = conn.execute(
                select(idempotency_keys.c.key).where(idempotency_keys.c.merchant_id == merchant)
            ).first()
            runs = conn.execute(
                select(func.count()).where(
                    beat_job_runs.c.job.in_(JOBS), beat_job_runs.c.last_success_at >= started
                )
            ).scalar()
        left = _left(engine, [old_event, young_event])
        purged = _rows(engine, [intent])[intent].card_token is None
        return purged and key is None and left == {young_event: (1, 0)} and runs == len(JOBS)

    with processes.celery_beat(RETENTION_BEAT):
        wait_until(done, timeout=60, what="beat's retention jobs to run on the worker")
