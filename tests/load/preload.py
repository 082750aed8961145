"""BENCH_PRELOAD=N: the bench on a database that already holds N intents (issue 12, item 4).

The N intents, their ledger transfers (holds, captures or voids, fees,
settlements, balances to match), one event each with its delivery and that
delivery's attempt are generated in set-based SQL (generate_series), in
batches of PRELOAD_BATCH intents, ONCE, into a template database named by N
and the migration head (``template_name``): a schema change makes a new one.
It is built under a temporary name and renamed when complete, so a build that
was interrupted is never used (its database is left to drop by hand). Each
run then gets a copy (``CREATE DATABASE ... TEMPLATE``, a file copy).

The intents follow ``make bench-report``'s day (its SQL, tests/load/report_bench.py),
BENCH_PRELOAD_DAY_INTENTS a day (1,000,000: the issue's large day), in the days
before today and all within every retention (so beat prunes none of it during
a run); 50 merchants of their own. ``daily_report`` times the daily report,
reconciliation and sealing of the first full day on the copy, rolled back.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from tests.load import report_bench as rb

PRELOAD_BATCH = 200_000
TEMPLATE_PREFIX = "clearhouse_bench_tpl_"
_BUILD_INDEX = "bench_preload_created_brin"
# Part of the template's name: a change to what is generated must build a new one too.
# 2: every intent enqueued long ago (the relay took a template of 1 for its outbox).
GENERATION = 2

# One event per intent (its final status), one succeeded delivery, one attempt.
EVENTS = """
WITH ev AS (
    INSERT INTO events (id, merchant_id, type, object_id, data, created_at)
    SELECT 'evt_' || substr(i.id, 4), i.merchant_id,
        'payment_intent.' || CASE i.status WHEN 'failed' THEN 'payment_failed' ELSE i.status END,
        i.id, jsonb_build_object('id', i.id, 'amount', i.amount, 'status', i.status),
        i.created_at + interval '1 second'
    FROM payment_intents i WHERE i.created_at >= :since AND i.created_at < :until
    RETURNING id, merchant_id, created_at
), d AS (
    INSERT INTO webhook_deliveries (id, event_id, merchant_id, url, status, attempts,
        last_status_code, created_at, updated_at, completed_at)
    SELECT 'whd_' || substr(ev.id, 5), ev.id, ev.merchant_id, 'https://example.com/hooks',
        'succeeded', 1, 200, ev.created_at, ev.created_at, ev.created_at
    FROM ev RETURNING id, created_at
)
INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, outcome, created_at)
SELECT id, 1, 200, 12, 'succeeded', created_at FROM d
"""


def template_name(n: int, head: str) -> str:
    """The template's name: a new N, migration head or generation is a new template."""
    return f"{TEMPLATE_PREFIX}{n}_{head}_g{GENERATION}"


def first_day(n: int, per_day: int, today):
    """The first (full) day of ``n`` intents at ``per_day``, ending before ``today``."""
    return today - timedelta(days=math.ceil(n / per_day))


def migration_head(url: str) -> str:
    from alembic.script import ScriptDirectory

    from shared.db.migrate import make_config

    return ScriptDirectory.from_config(make_config(url)).get_current_head()


def _on_server(admin_url: str, sql: str, **params):
    """Run ``sql`` on the server's maintenance database (AUTOCOMMIT, the superuser); its rows."""
    from sqlalchemy.engine import make_url

    from shared.db.migrate import _maintenance_connect

    engine, conn = _maintenance_connect(make_url(admin_url))
    try:
        result = conn.execute(text(sql), params)
        return result.all() if result.returns_rows else None
    finally:
        conn.close()
        engine.dispose()


def ensure_template(admin_url: str, app_url: str, n: int, per_day: int, log) -> dict:
    """Build the template for ``n`` unless it exists; its name, and the build time if built."""
    from shared.db.engine import dispose_engines
    from shared.db.migrate import drop_database, upgrade

    name = template_name(n, migration_head(admin_url))
    if _on_server(admin_url, "SELECT 1 FROM pg_database WHERE datname = :n", n=name):
        log(f"preload: reusing template {name}")
        return {"template": name, "built_s": None}
    building = f"{name}_building"
    log(f"preload: building template {name} ({n} intents, {per_day} a day); once")
    began = time.monotonic()
    # What an interrupted build left (it was never renamed, so never used) goes first.
    drop_database(rb_url(admin_url, building))
    upgrade(rb_url(admin_url, building))
    day = first_day(n, per_day, datetime.now(UTC).date())
    # As the owner (the app role may neither index nor vacuum the tables). Each batch picks
    # its intents by created_at, which no index of the schema leads with: a BRIN index
    # (generated in time order, it stays tiny) spares every batch a scan of all before it,
    # and goes before the copy, whose schema must be the migrations' own.
    owner = create_engine(rb_url(admin_url, building), isolation_level="AUTOCOMMIT")
    try:
        with owner.connect() as conn:
            conn.execute(
                text(f"CREATE INDEX {_BUILD_INDEX} ON payment_intents USING brin (created_at)")
            )
            generate(rb_url(app_url, building), n, per_day, day, log)
            conn.execute(text(f"DROP INDEX {_BUILD_INDEX}"))
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        owner.dispose()
    dispose_engines()
    _on_server(admin_url, f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    built = round(time.monotonic() - began, 1)
    log(f"preload: template {name} built in {built} s")
    return {"template": name, "built_s": built}


def rb_url(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + db


def generate(app_url: str, n: int, per_day: int, day, log) -> None:
    """N intents from ``day`` on, per_day a day, with transfers, events, deliveries, attempts."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    spacing = timedelta(seconds=86400 / per_day)
    origin = start - spacing
    engine = create_engine(app_url)
    try:
        with engine.begin() as conn:
            for sql in rb.ACCOUNTS:
                conn.execute(text(sql), {"merchants": rb.MERCHANTS})
        for lo in range(1, n + 1, PRELOAD_BATCH):
            hi = min(n, lo + PRELOAD_BATCH - 1)
            # Intent g is created at origin + g * spacing (the first at midnight): this
            # batch's window.
            window = {"since": origin + lo * spacing, "until": origin + (hi + 1) * spacing}
            params = {"merchants": rb.MERCHANTS, "lo": lo, "hi": hi, "day": origin}
            with engine.begin() as conn:
                conn.execute(text(rb.INTENTS), {**params, "spacing": spacing})
                for sql in rb.TRANSFERS:
                    conn.execute(text(sql), window)
                conn.execute(text(EVENTS), window)
            log(f"preload: {hi} of {n} intents")
        with engine.begin() as conn:
            conn.execute(text(rb.BALANCES))
    finally:
        engine.dispose()


def copy_database(admin_url: str, template: str, name: str) -> None:
    """CREATE DATABASE ``name`` TEMPLATE ``template`` (nobody may be connected to it)."""
    _on_server(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def daily_report(app_url: str, n: int, per_day: int) -> dict:
    """The daily report (reconciliation, sealing) of the copy's first full day, rolled back."""
    from shared.services import reports

    day = first_day(n, per_day, datetime.now(UTC).date())
    engine = create_engine(app_url)
    try:
        elapsed, result = rb._timed(engine, lambda u: reports.run_daily(u, day))
        with engine.connect() as c:
            intents = c.execute(
                text(
                    "SELECT count(*) FROM payment_intents"
                    " WHERE created_at >= :a AND created_at < :a + interval '1 day'"
                ),
                {"a": datetime.combine(day, datetime.min.time(), tzinfo=UTC)},
            ).scalar()
    finally:
        engine.dispose()
    return {
        "day": day.isoformat(),
        "intents_that_day": intents,
        "report_s": round(elapsed, 2),
        "rows": result.rows,
        "discrepancies": result.discrepancy_count,
        "sealed": result.sealed,
        "target_s_max": 30,
        "met": bool(result.sealed and not result.discrepancy_count and elapsed <= 30),
    }


def flat_cost(empty: list[dict], preloaded: list[dict]) -> dict:
    """completed/s with the preload against without it (medians), and the target."""
    import statistics

    from tests.load.reference import ratio

    def med(runs):
        values = [r["completed_per_s"] for r in runs]
        return round(statistics.median(values), 2) if values else None

    e, p = med(empty), med(preloaded)
    r = ratio(p, e)
    return {
        "completed_per_s_empty": e,
        "completed_per_s_preloaded": p,
        "preloaded_vs_empty": r,
        "target_ratio_min": 0.9,
        "met": bool(r is not None and r >= 0.9),
    }
