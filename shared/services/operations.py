"""What operators watch, read from Postgres: the gauges the metrics collector serves.

Each reader is one indexed statement (the collector runs them at every scrape,
under a short statement timeout), taking a plain connection: the collector
reads in autocommit, so one statement that fails leaves the others to run.
The beat jobs' last successes are written here too, in each job's own
transaction (``job_succeeded``), so they survive restarts of every process.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert

from shared.db.tables import beat_job_runs
from shared.db.uow import UnitOfWork
from shared.domain.intent import PRIORITIES
from shared.services.maintenance import STAGE_STEP

# The stages a processing intent waits at (authorized is never processing).
PIPELINE_STAGES: tuple[str, ...] = tuple(str(s) for s in STAGE_STEP)


def outbox_backlog(conn) -> int:
    """Intents committed but not yet handed to the first queue (ix_intents_outbox)."""
    return conn.execute(
        text("SELECT count(*) FROM payment_intents WHERE enqueued_at IS NULL")
    ).scalar_one()


# The age gauges, one row each: per value of the key column, the seconds since the
# oldest intent matching the condition reached the time column (0: none). Key and
# time column are a partial index's and the condition implies its predicate, so
# each key is one descent of that index.
# name: (key column, its values, time column, condition on p)
_AGES: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    # ix_intents_processing_stage
    "oldest_processing_age": (
        "stage",
        PIPELINE_STAGES,
        "stage_changed_at",
        "p.status = 'processing'",
    ),
    # ix_intents_unsettled_age
    "settlement_lag": (
        "priority",
        tuple(PRIORITIES),
        "finalized_at",
        "p.status = 'succeeded' AND p.settlement_status = 'pending' AND p.finalized_at IS NOT NULL",
    ),
}


def _oldest_age(conn, name: str) -> dict[str, float]:
    key, values, since, where = _AGES[name]
    rows = conn.execute(
        text(
            f"SELECT s.{key}, GREATEST(EXTRACT(EPOCH FROM now() - ("
            f"   SELECT p.{since} FROM payment_intents p"
            f"   WHERE {where} AND p.{key} = s.{key}"
            f"   ORDER BY p.{since} LIMIT 1)), 0)"
            f" FROM unnest(CAST(:keys AS text[])) AS s({key})"
        ),
        {"keys": list(values)},
    )
    return {value: float(age or 0) for value, age in rows}


def oldest_processing_age(conn) -> dict[str, float]:
    """Per stage, seconds since the oldest processing intent entered it (0: none waits)."""
    return _oldest_age(conn, "oldest_processing_age")


def settlement_lag(conn) -> dict[str, float]:
    """Per priority, seconds since the oldest succeeded, unsettled intent succeeded (0: none)."""
    return _oldest_age(conn, "settlement_lag")


def webhook_deliveries_pending(conn) -> int:
    """Deliveries still to be sent or retried (ix_deliveries_due, partial on pending)."""
    return conn.execute(
        text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
    ).scalar_one()


def beat_jobs_last_success(conn) -> dict[str, float]:
    """Unix time of the last successful run of each periodic job that ever ran."""
    rows = conn.execute(text("SELECT job, EXTRACT(EPOCH FROM last_success_at) FROM beat_job_runs"))
    return {job: float(ts) for job, ts in rows}


def job_succeeded(uow: UnitOfWork, job: str) -> None:
    """Record, in the job's own transaction, that ``job`` ran: a rollback forgets it."""
    stmt = insert(beat_job_runs).values(job=job, last_success_at=text("clock_timestamp()"))
    uow.conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[beat_job_runs.c.job],
            set_={"last_success_at": stmt.excluded.last_success_at},
        )
    )
