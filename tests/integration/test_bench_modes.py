"""The data the bench's long modes load, on real Postgres and the real pipeline.

The figures themselves are measured by ``make bench``, never asserted here; these
tests prove that what BENCH_PRELOAD and BENCH_BACKLOG_ECONOMY put in the database
is what the system would have written: a balanced ledger that the daily report
reconciles and seals, and economy intents that the real relay and workers take
through like the API's.
"""

from __future__ import annotations

import os
import random
import secrets
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, func, select, text

from shared.db.migrate import drop_database
from shared.db.tables import events, payment_intents, webhook_attempts, webhook_deliveries
from tests import factories as f
from tests.load import modes, preload
from tests.support.scratchdb import admin_url, scratch_database

pytestmark = pytest.mark.integration


def _count(conn, table) -> int:
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_the_preload_template_is_built_once_reused_and_copied_whole():
    app_base = os.environ["DATABASE_URL"]
    admin_base = admin_url(app_base)
    # A size no bench uses, so the template is this test's own.
    n = 1000 + random.randrange(1000)
    name = preload.template_name(n, preload.migration_head(admin_base))
    copy = f"clearhouse_bench_copy_{secrets.token_hex(4)}"
    try:
        built = preload.ensure_template(admin_base, app_base, n, 500, lambda msg: None)
        assert built["template"] == name and built["built_s"] is not None
        # The second time it is only found.
        assert preload.ensure_template(admin_base, app_base, n, 500, lambda msg: None) == {
            "template": name,
            "built_s": None,
        }
        preload.copy_database(admin_base, name, copy)
        copy_url = preload.rb_url(app_base, copy)
        engine = create_engine(copy_url)
        try:
            with engine.connect() as conn:
                assert _count(conn, payment_intents) == n
                assert _count(conn, events) == _count(conn, webhook_deliveries) == n
                assert _count(conn, webhook_attempts) == n
                # Every intent is before today, within every retention.
                newest = conn.execute(
                    text("SELECT max(created_at) < date_trunc('day', now()) FROM payment_intents")
                ).scalar_one()
                assert newest
                # None is left in the outbox: a relay would send them all.
                unsent = select(func.count()).where(payment_intents.c.enqueued_at.is_(None))
                assert conn.execute(unsent).scalar_one() == 0
        finally:
            engine.dispose()
        # The ledger it holds balances: the first day reconciles and seals.
        report = preload.daily_report(copy_url, n, 500)
        assert report["intents_that_day"] == 500
        assert (report["discrepancies"], report["sealed"]) == (0, True)
    finally:
        drop_database(preload.rb_url(admin_base, copy))
        drop_database(preload.rb_url(admin_base, name))
        drop_database(preload.rb_url(admin_base, f"{name}_building"))


def test_the_economy_backlog_goes_through_the_real_relay_and_pipeline(
    worker, engine, settings, make_merchant
):
    merchant = make_merchant()
    run = SimpleNamespace(settings=settings, engine=engine, merchant=merchant)
    ids = modes.insert_economy_backlog(run, 30)
    assert len(set(ids)) == 30
    rows = f.wait_until_final(engine, ids, timeout=60)
    assert {r.priority for r in rows.values()} == {"economy"}
    assert {r.status for r in rows.values()} == {"succeeded"}
    with engine.connect() as conn:
        tokens = conn.execute(
            select(func.count(func.distinct(payment_intents.c.card_fingerprint))).where(
                payment_intents.c.id.in_(ids)
            )
        ).scalar_one()
    assert tokens == 30  # a card of its own each: no velocity rule ties them together


@pytest.fixture(scope="module")
def scratch():
    """A database of this module's own: the generator's SQL makes the platform's
    accounts, which the layer's shared database already has."""
    with scratch_database("clearhouse_preload_sql") as (_, engine):
        yield engine


def test_the_preload_sql_generates_intent_ten_million_without_overflow(scratch):
    """The generator's arithmetic holds for 10,000,000 intents (int4 overflowed past 271,180)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from tests.load import report_bench as rb

    with scratch.connect() as conn, conn.begin() as tx:
        for sql in rb.ACCOUNTS:
            conn.execute(text(sql), {"merchants": rb.MERCHANTS})
        params = {"merchants": rb.MERCHANTS, "lo": 9_999_999, "hi": 10_000_000}
        at = {"day": datetime(2026, 1, 1, tzinfo=UTC), "spacing": timedelta(microseconds=8640)}
        conn.execute(text(rb.INTENTS), {**params, **at})
        amounts = conn.execute(
            text("SELECT amount FROM payment_intents WHERE id IN ('pi_9999999', 'pi_10000000')")
        ).scalars()
        assert all(1000 <= a < 101_000 for a in amounts)
        tx.rollback()


def test_reconciliation_sums_the_ledger_without_a_per_row_subplan(scratch):
    """The account sums stay set-based when the pending ids outgrow work_mem.

    Its first version's ``IN (SELECT pending_id ...)`` became a plain subplan,
    one scan of every hold per transfer, once they did not fit: a 1,000,000-intent
    ledger's reconciliation never ended. 64 kB of work_mem and 3,000 intents
    stand in for the million.
    """
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from shared.services import reconcile
    from tests.load import report_bench as rb

    start = datetime(2026, 1, 1, tzinfo=UTC)
    params = {"merchants": rb.MERCHANTS, "lo": 1, "hi": 3000, "day": start}
    params |= {"spacing": timedelta(seconds=1), "since": start, "until": start + timedelta(days=1)}
    with scratch.connect() as conn, conn.begin() as tx:
        conn.execute(text("SET LOCAL work_mem = '64kB'"))
        for sql in rb.SETUP:
            conn.execute(text(sql), params)
        plan = "\n".join(conn.execute(text("EXPLAIN " + reconcile._ACCOUNT_SUMS)).scalars())
        assert "SubPlan" not in plan, plan
        tx.rollback()
