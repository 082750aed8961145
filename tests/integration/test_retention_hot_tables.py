"""Retention of the hot tables that grew without bound: limit counters, refresh tokens.

As in test_retention.py, the jobs run against the layer's shared database:
each test plants rows of its own merchant and checks only those. The last
test runs both jobs the way production does, the real beat sending them to
the real worker.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, insert, select, text

from shared.db.tables import beat_job_runs, limit_counters, refresh_tokens
from shared.db.uow import UnitOfWork
from shared.domain.limits import counter_keys
from shared.services import retention
from tests.support import processes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _drain(engine, job, days: int) -> int:
    """Run ``job`` in batches of one, each its own transaction, until a batch is empty."""
    total = 0
    while True:
        with UnitOfWork(engine) as u:
            n = job(u, days, 1)
            u.commit()
        total += n
        if n == 0:
            return total


def _today(engine) -> date:
    with engine.connect() as conn:
        return conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()


def _month_before(day: date, months: int) -> date:
    first = day.replace(day=1)
    for _ in range(months):
        first = (first - timedelta(days=1)).replace(day=1)
    return first


def _plant_counters(engine, keys) -> None:
    with engine.begin() as conn:
        conn.execute(insert(limit_counters), [{"key": k, "used": 100} for k in keys])


def _left_counters(engine, keys) -> set[str]:
    with engine.connect() as conn:
        found = conn.execute(select(limit_counters.c.key).where(limit_counters.c.key.in_(keys)))
        return set(found.scalars())


def test_limit_counters_go_once_their_window_ended_days_ago(engine):
    merchant = f"mch_{secrets.token_hex(6)}"
    today = _today(engine)
    daily = {
        f"d{d}": counter_keys(merchant, "card_x", "USD", today - timedelta(days=d))[0]
        for d in (3, 2, 1, 0)
    }
    month = {
        n: counter_keys(merchant, "card_x", "USD", _month_before(today, m))[1]
        for n, m in {"m2": 2, "m1": 1, "m0": 0}.items()
    }
    # A key of another shape (none is made today) is never taken for a window.
    odd = {"odd": f"x:{merchant}:something-else"}
    keys = {**daily, **month, **odd}
    _plant_counters(engine, keys.values())

    assert _drain(engine, retention.prune_limit_counters, 2) >= 2
    # Two days' grace: a day counter goes when its day is more than two days
    # back; a month's once its last day is, so last month's goes from the 3rd on.
    kept = {"d2", "d1", "d0", "m0", "odd"} | ({"m1"} if today.day <= 2 else set())
    assert _left_counters(engine, keys.values()) == {keys[n] for n in kept}


def test_a_late_release_of_a_pruned_counter_changes_nothing_else(engine):
    from shared.services import outcomes

    merchant = f"mch_{secrets.token_hex(6)}"
    old = _today(engine) - timedelta(days=10)
    keys = counter_keys(merchant, "card_y", "USD", old)
    _plant_counters(engine, keys)
    assert _drain(engine, retention.prune_limit_counters, 2) >= 2
    # A hold from that day expires now: its release finds no counter of the
    # past day and no error, and leaves nothing behind.
    row = SimpleNamespace(
        id="pi_none",
        merchant_id=merchant,
        payer_key="card_y",
        currency="USD",
        limit_reserved=100,
        limit_day=old,
    )
    with UnitOfWork(engine) as u:
        outcomes.release_limits(u, [row])
        u.commit()
    assert _left_counters(engine, keys) == set()


def _token(
    conn, client_id: str, merchant: str, *, expires_days: float, revoked_days=None, used=False
):
    """A refresh token of ``client_id`` expiring ``expires_days`` from now (negative: past)."""
    token_hash = secrets.token_hex(32)
    conn.execute(
        insert(refresh_tokens).values(
            token_hash=token_hash,
            family_id=f"rtf_{secrets.token_hex(8)}",
            client_id=client_id,
            merchant_id=merchant,
            scope="payment_intents:read",
            expires_at=func.now() + text(f"{float(expires_days)} * interval '1 day'"),
            used_at=func.now() if used else None,
            revoked_at=None
            if revoked_days is None
            else func.now() - text(f"{float(revoked_days)} * interval '1 day'"),
        )
    )
    return token_hash


def _left_tokens(engine, hashes) -> set[str]:
    with engine.connect() as conn:
        found = conn.execute(
            select(refresh_tokens.c.token_hash).where(refresh_tokens.c.token_hash.in_(hashes))
        )
        return set(found.scalars())


def test_refresh_tokens_go_days_after_they_expired_or_were_revoked(engine, make_merchant):
    m = make_merchant()
    args = (m["client_id"], m["merchant_id"])
    with engine.begin() as conn:
        tokens = {
            "expired_long_ago": _token(conn, *args, expires_days=-8),
            "expired_lately": _token(conn, *args, expires_days=-6),
            "revoked_long_ago": _token(conn, *args, expires_days=20, revoked_days=8),
            "revoked_lately": _token(conn, *args, expires_days=20, revoked_days=6),
            # Spent but live: reuse detection needs it until it expires.
            "used": _token(conn, *args, expires_days=20, used=True),
            "live": _token(conn, *args, expires_days=20),
        }
    assert _drain(engine, retention.prune_refresh_tokens, 7) >= 2
    kept = {"expired_lately", "revoked_lately", "used", "live"}
    assert _left_tokens(engine, tokens.values()) == {tokens[n] for n in kept}


PLANS = {
    "counters": (retention._PRUNE_COUNTERS, "ix_limit_counters_window"),
    "tokens": (retention._PRUNE_TOKENS, "ix_refresh_tokens_dead"),
}


@pytest.mark.parametrize("statement, index", PLANS.values(), ids=PLANS.keys())
def test_each_job_finds_its_rows_through_its_index(engine, statement, index):
    # With scans made dear, a plan without the index means the expression
    # the job filters on is not the one the index was built on.
    with engine.connect() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(text(f"EXPLAIN {statement.text}"), {"days": 7, "n": 200}).scalars()
        )
    assert index in plan, plan


RETENTION_BEAT = {"RETENTION_INTERVAL_S": "1", "BEAT_LOCK_TIMEOUT_S": "3"}
JOBS = ("prune-limit-counters", "prune-refresh-tokens")


def test_the_real_beat_runs_both_jobs_on_the_worker(worker, engine, make_merchant):
    m = make_merchant()
    old = counter_keys(m["merchant_id"], "card_z", "USD", _today(engine) - timedelta(days=30))
    young = counter_keys(m["merchant_id"], "card_z", "USD", _today(engine))
    _plant_counters(engine, [*old, *young])
    with engine.begin() as conn:
        dead = _token(conn, m["client_id"], m["merchant_id"], expires_days=-30)
        live = _token(conn, m["client_id"], m["merchant_id"], expires_days=20)
    started = datetime.now(UTC)

    def done() -> bool:
        with engine.connect() as conn:
            runs = conn.execute(
                select(func.count()).where(
                    beat_job_runs.c.job.in_(JOBS), beat_job_runs.c.last_success_at >= started
                )
            ).scalar()
        counters = _left_counters(engine, [*old, *young]) == set(young)
        return counters and _left_tokens(engine, [dead, live]) == {live} and runs == len(JOBS)

    with processes.celery_beat(RETENTION_BEAT):
        wait_until(done, timeout=60, what="beat's counter and token retention to run")
