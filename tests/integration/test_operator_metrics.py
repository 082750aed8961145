"""Operator metrics on real Postgres and a real gunicorn: what each gauge reads, through which
index, the beat jobs' successes, the delivery latency, and the operator ports themselves."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from intake.metrics import CollectErrors, PostgresGauges, collector_engine
from shared.db.uow import UnitOfWork
from shared.services import operations as ops
from tests.conftest import free_port
from tests.support import processes
from tests.support.scratchdb import admin_url, scratch_database
from tests.support.waiting import until

pytestmark = pytest.mark.integration

PG_FAMILIES = {
    "clearhouse_outbox_backlog",
    "clearhouse_oldest_processing_age_seconds",
    "clearhouse_webhook_deliveries_pending",
    "clearhouse_settlement_lag_seconds",
    "clearhouse_beat_job_last_success_timestamp_seconds",
}


@pytest.fixture(scope="module")
def scratch():
    """A database of this module's own: the gauges count every row, so exact figures."""
    with scratch_database("clearhouse_opmetrics") as (url, engine):
        yield url, engine


def _intent(conn, status, stage, *, priority="standard", age_s=0, enqueued=True, **extra):
    intent_id = f"pi_{uuid.uuid4().hex[:20]}"
    values = {
        "id": intent_id,
        "status": status,
        "stage": stage,
        "priority": priority,
        "changed": datetime.now(UTC) - timedelta(seconds=age_s),
        "enqueued": datetime.now(UTC) if enqueued else None,
        "finalized": extra.get("finalized"),
        "settlement": extra.get("settlement"),
    }
    conn.execute(
        text(
            "INSERT INTO payment_intents (id, merchant_id, amount, currency, status, stage,"
            " capture_method, priority, pm_type, payer_key, stage_changed_at, enqueued_at,"
            " finalized_at, settlement_status) VALUES (:id, 'mch_ops', 100, 'USD', :status,"
            " :stage, 'automatic', :priority, 'card', 'payer', :changed, :enqueued,"
            " :finalized, :settlement)"
        ),
        values,
    )
    return intent_id


def _delivery(conn, status, created_ago_s=0.0, attempts=0):
    event_id, delivery_id = f"evt_{uuid.uuid4().hex[:20]}", f"whd_{uuid.uuid4().hex[:20]}"
    conn.execute(
        text(
            "INSERT INTO events (id, merchant_id, type, object_id, data)"
            " VALUES (:e, 'mch_ops', 'payment_intent.succeeded', 'pi_x', '{}')"
        ),
        {"e": event_id},
    )
    created = datetime.now(UTC) - timedelta(seconds=created_ago_s)
    conn.execute(
        text(
            "INSERT INTO webhook_deliveries (id, event_id, merchant_id, url, status, attempts,"
            " next_attempt_at, created_at) VALUES (:d, :e, 'mch_ops', 'http://127.0.0.1:9/h',"
            " :s, :a, now(), :c)"
        ),
        {"d": delivery_id, "e": event_id, "s": status, "a": attempts, "c": created},
    )
    return delivery_id, created


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def planted(scratch):
    """Rows of every kind the gauges must count, and of every kind they must not."""
    _, engine = scratch
    with engine.begin() as conn:
        _intent(conn, "processing", "received", age_s=100, enqueued=False)  # in the outbox
        _intent(conn, "processing", "received", age_s=10)
        _intent(conn, "processing", "risk_scored", age_s=500)
        _intent(conn, "failed", "limits_checked", age_s=9_000)  # not processing
        _intent(conn, "requires_capture", "authorized", age_s=9_000)
        for priority, ago, settlement in [
            ("standard", 200, "pending"),
            ("standard", 20, "pending"),
            ("standard", 9_999, "settled"),  # settled: no lag
            ("economy", 50, "pending"),
        ]:
            _intent(
                conn,
                "succeeded",
                "authorized",
                priority=priority,
                finalized=_ago(ago),
                settlement=settlement,
            )
        for status in ("pending", "pending", "succeeded", "failed"):
            _delivery(conn, status)
    with UnitOfWork(engine) as uow:
        ops.job_succeeded(uow, "redrive-stuck-intents")
        uow.commit()
    with UnitOfWork(engine) as uow:  # rolled back: no success recorded
        ops.job_succeeded(uow, "daily-report")
    return engine


def _by_label(got, name, label):
    return {dict(lbl)[label]: v for (n, lbl), v in got.items() if n == name}


def test_each_gauge_reads_exactly_what_postgres_holds(scratch, planted):
    url, _ = scratch
    errors = CollectErrors()
    gauges = PostgresGauges(collector_engine(url), jobs={"redrive-stuck-intents"}, errors=errors)
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in gauges.collect()
        for s in family.samples
    }
    assert errors._counts == {}, errors._counts
    assert got[("clearhouse_outbox_backlog", ())] == 1
    assert got[("clearhouse_webhook_deliveries_pending", ())] == 2
    age = _by_label(got, "clearhouse_oldest_processing_age_seconds", "stage")
    assert set(age) == {"received", "limits_checked", "risk_scored", "fee_computed"}
    assert age["received"] == pytest.approx(100, abs=15)
    assert age["risk_scored"] == pytest.approx(500, abs=15)
    assert age["limits_checked"] == age["fee_computed"] == 0
    lag = _by_label(got, "clearhouse_settlement_lag_seconds", "priority")
    assert lag["standard"] == pytest.approx(200, abs=15)
    assert lag["economy"] == pytest.approx(50, abs=15)
    assert lag["instant"] == 0
    beat = _by_label(got, "clearhouse_beat_job_last_success_timestamp_seconds", "job")
    assert set(beat) == {"redrive-stuck-intents"}  # daily-report's success was rolled back
    assert beat["redrive-stuck-intents"] == pytest.approx(time.time(), abs=60)


def test_a_slow_statement_is_cut_by_the_timeout_and_only_its_family_is_left_out(scratch, planted):
    url, _ = scratch
    errors = CollectErrors()
    gauges = PostgresGauges(collector_engine(url), jobs=(), errors=errors)
    # A reader that runs past the collector's statement timeout (1 s) stands in for a
    # statement slowed by a sick database.
    slow = ("outbox_backlog", lambda conn: conn.execute(text("SELECT pg_sleep(5)")), None)
    gauges._families = [slow, *gauges._families[1:]]
    started = time.monotonic()
    names = {family.name for family in gauges.collect()}
    assert time.monotonic() - started < 4  # cut at the 1 s statement timeout
    assert errors._counts == {"outbox_backlog": 1}
    assert names == PG_FAMILIES - {"clearhouse_outbox_backlog"}


class Recording:
    """A connection that records each statement it runs (to EXPLAIN it after)."""

    def __init__(self, conn):
        self.conn = conn
        self.statements = []

    def execute(self, stmt, params=None):
        self.statements.append((str(stmt), params or {}))
        return self.conn.execute(stmt, params or {})


@pytest.mark.parametrize(
    ("reader", "index"),
    [
        (ops.outbox_backlog, "ix_intents_outbox"),
        (ops.oldest_processing_age, "ix_intents_processing_stage"),
        (ops.settlement_lag, "ix_intents_unsettled_age"),
        (ops.webhook_deliveries_pending, "ix_deliveries_due"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_each_collector_query_reads_its_partial_index(scratch, planted, reader, index):
    """No scan of the table, at any size: the planner is told seq scans cost the earth."""
    _, engine = scratch
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        recording = Recording(conn)
        reader(recording)
        ((sql, params),) = recording.statements
        plan = "\n".join(conn.execute(text("EXPLAIN " + sql), params).scalars())
    assert index in plan, plan
    assert "Seq Scan" not in plan, plan


def test_a_delivery_that_succeeds_observes_its_latency_from_the_event(scratch):
    from shared.observability import metrics
    from shared.services import webhooks
    from shared.services.webhooks import Outcome, Send

    url, engine = scratch
    with engine.begin() as conn:
        ok, ok_created = _delivery(conn, "pending", created_ago_s=30)
        failing, failing_created = _delivery(conn, "pending", created_ago_s=30)
        raced, raced_created = _delivery(conn, "pending", created_ago_s=30, attempts=1)

    def observed():
        hist = metrics.WEBHOOK_DELIVERY_LATENCY.labels("true")
        return sum(b.get() for b in hist._buckets), hist._sum.get()

    before_n, before_sum = observed()
    sends = [
        Send(ok, "mch_ops", "http://127.0.0.1:9/h", 0, ok_created, b"{}", ("s",)),
        Send(failing, "mch_ops", "http://127.0.0.1:9/h", 0, failing_created, b"{}", ("s",)),
        # Another worker recorded this attempt already (attempts moved on): not ours to count.
        Send(raced, "mch_ops", "http://127.0.0.1:9/h", 0, raced_created, b"{}", ("s",)),
    ]
    outcomes = [Outcome(status_code=200), Outcome(status_code=500), Outcome(status_code=200)]
    try:
        with UnitOfWork(engine) as uow:
            stored = webhooks.record_attempts(uow, sends, outcomes, max_age_s=3600, scale=1.0)
            assert observed() == (before_n, before_sum)  # nothing before the commit
            uow.commit()
    finally:
        # The other tests of this module count every delivery of the database. Attempts
        # are append-only to the services' role: the cleanup is a superuser's.
        admin = create_engine(admin_url(url), poolclass=NullPool)
        with admin.begin() as conn:
            ids = {"ids": [ok, failing, raced]}
            conn.execute(text("DELETE FROM webhook_attempts WHERE delivery_id = ANY(:ids)"), ids)
            conn.execute(text("DELETE FROM webhook_deliveries WHERE id = ANY(:ids)"), ids)
        admin.dispose()
    assert stored == {ok: "succeeded", failing: "pending"}
    n, total = observed()
    assert n == before_n + 1
    assert total - before_sum == pytest.approx(30, abs=10)


# -- beat jobs: recorded by the task base, in the job's transaction ----------------


def _last_success(engine, job):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT last_success_at FROM beat_job_runs WHERE job = :j"), {"j": job}
        ).scalar()


def test_a_beat_job_records_its_success_only_when_its_work_commits(engine, monkeypatch):
    import workers.base
    from workers.base import task

    name = f"test.clearhouse.{uuid.uuid4().hex}"
    job = f"test-job-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(workers.base, "beat_jobs", lambda settings: {name: job})
    fail = [True]

    @task(name)
    def periodic(self, uow):
        uow.conn.execute(text("SELECT 1"))
        if fail[0]:
            raise KeyError("a bug")
        return "done"

    with pytest.raises(KeyError):
        periodic.apply().get()
    assert _last_success(engine, job) is None
    fail[0] = False
    assert periodic.apply().get() == "done"
    first = _last_success(engine, job)
    assert first is not None
    assert periodic.apply().get() == "done"
    assert _last_success(engine, job) > first


def test_a_real_periodic_task_records_its_beat_entry_name(engine):
    from workers.periodic import prune_idempotency_keys

    before = time.time()
    prune_idempotency_keys.apply().get()
    at = _last_success(engine, "prune-idempotency-keys")
    assert at is not None and at.timestamp() >= before - 1


# -- the operator ports, served by real processes ------------------------------


def _families(url: str) -> dict:
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def test_the_api_serves_metrics_on_the_operator_port_and_never_on_the_merchant_port(
    database, redis_client
):
    port = free_port()
    with processes.gunicorn(port, workers=2) as api:
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        merchant = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert merchant.status_code == 404
        assert "clearhouse_" not in merchant.text
        families = _families(api.metrics_url)
        for name in PG_FAMILIES | {"clearhouse_queue_depth", "clearhouse_metrics_collect_errors"}:
            assert name in families, name
        stages = families["clearhouse_oldest_processing_age_seconds"].samples
        assert {s.labels["stage"] for s in stages} == set(ops.PIPELINE_STAGES)
        lag = families["clearhouse_settlement_lag_seconds"].samples
        assert {s.labels["priority"] for s in lag} == {"instant", "standard", "economy"}
        errors = families["clearhouse_metrics_collect_errors"].samples
        assert errors and all(s.value == 0 for s in errors), errors
        # The workers' request metrics, summed by the master: the /health above, the 404.
        requests_total = families["clearhouse_http_requests"].samples
        routes = {(s.labels["route"], s.labels["status"]) for s in requests_total}
        assert {("/health", "200"), ("unmatched", "404")} <= routes, routes


def test_an_operator_port_already_taken_does_not_stop_the_api(database, redis_client):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        port = free_port()
        with processes.gunicorn(port, workers=1, env={"METRICS_PORT": str(busy)}) as api:
            assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
            api.wait_for(f"metrics port {busy} unavailable", timeout=10)


def test_the_relay_serves_the_time_of_its_last_pass(database, redis_client):
    with processes.relay() as relay:
        url = f"http://127.0.0.1:{relay.metrics_port}/metrics"

        def last_pass():
            samples = _families(url)["clearhouse_relay_last_pass_timestamp_seconds"].samples
            return samples[0].value if samples else None

        first = until(last_pass, timeout=10, what="the relay's first pass")
        assert first == pytest.approx(time.time(), abs=10)
        # A pass runs at least every second (POLL_S), idle or not.
        until(lambda: last_pass() > first, timeout=10, what="a later pass")
        assert "clearhouse_relay_intents_relayed" in _families(url)
