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


def oldest_processing_age(conn) -> dict[str, float]:
    """Per stage, seconds since the oldest processing intent entered it (0: none waits).

    One descent of ix_intents_processing_stage per stage.
    """
    rows = conn.execute(
        text(
            "SELECT s.stage, GREATEST(EXTRACT(EPOCH FROM now() - ("
            "   SELECT p.stage_changed_at FROM payment_intents p"
            "   WHERE p.status = 'processing' AND p.stage = s.stage"
            "   ORDER BY p.stage_changed_at LIMIT 1)), 0)"
            " FROM unnest(CAST(:stages AS text[])) AS s(stage)"
        ),
        {"stages": list(PIPELINE_STAGES)},
    )
    return {stage: float(age or 0) for stage, age in rows}


def settlement_lag(conn) -> dict[str, float]:
    """Per priority, seconds since the oldest succeeded, unsettled intent succeeded (0: none).

    One descent of ix_intents_unsettled_age per priority.
    """
    rows = conn.execute(
        text(
            "SELECT s.priority, GREATEST(EXTRACT(EPOCH FROM now() - ("
            "   SELECT p.finalized_at FROM payment_intents p"
            "   WHERE p.status = 'succeeded' AND p.settlement_status = 'pending'"
            "   AND p.priority = s.priority AND p.finalized_at IS NOT NULL"
            "   ORDER BY p.finalized_at LIMIT 1)), 0)"
            " FROM unnest(CAST(:priorities AS text[])) AS s(priority)"
        ),
        {"priorities": list(PRIORITIES)},
    )
    return {priority: float(age or 0) for priority, age in rows}


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
