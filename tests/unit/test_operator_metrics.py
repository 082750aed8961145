"""The operator port: scrape-time gauges that never fail a scrape, the port itself, the relay's.

Postgres and Redis are stand-ins here; the real queries (and their indexes) are proven in
tests/integration/test_operator_metrics.py, the gunicorn master serving them too.
"""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from intake.metrics import CollectErrors, PostgresGauges, QueueDepth, serve_operator_port
from shared.config import Settings
from shared.services.operations import PIPELINE_STAGES

NOW = 1_800_000_000.0
STAGES = ("received", "limits_checked", "risk_scored", "fee_computed")
PG_FAMILIES = {
    "clearhouse_outbox_backlog",
    "clearhouse_oldest_processing_age_seconds",
    "clearhouse_webhook_deliveries_pending",
    "clearhouse_settlement_lag_seconds",
    "clearhouse_beat_job_last_success_timestamp_seconds",
}


class Result:
    def __init__(self, rows):
        self._rows = rows

    def scalar_one(self):
        return self._rows

    def __iter__(self):
        return iter(self._rows)


class FakeConn:
    """Answers each collector statement by what it reads; ``broken``: the ones that fail."""

    def __init__(self, broken=()):
        self.broken = broken
        self.statements = []
        self.isolation = None

    def execution_options(self, isolation_level=None):
        self.isolation = isolation_level
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, stmt, params=None):
        sql = str(stmt)
        self.statements.append(sql)
        for needle in self.broken:
            if needle in sql:
                raise RuntimeError(f"canceling statement due to statement timeout ({needle})")
        if "enqueued_at IS NULL" in sql:
            return Result(7)
        if "stage_changed_at" in sql:
            return Result([(s, 42.5 if s == "risk_scored" else 0) for s in params["keys"]])
        if "finalized_at" in sql:
            return Result([(p, 300.0 if p == "economy" else 0) for p in params["keys"]])
        if "webhook_deliveries" in sql:
            return Result(3)
        if "beat_job_runs" in sql:
            return Result([("redrive-stuck-intents", NOW), ("a-job-no-longer-scheduled", 1.0)])
        raise AssertionError(sql)


class FakeEngine:
    def __init__(self, conn=None, down=False):
        self.conn = conn or FakeConn()
        self.down = down

    def connect(self):
        if self.down:
            raise OSError("connection refused")
        return self.conn


class FakeRedis:
    def __init__(self, down=False):
        self.down = down

    def pipeline(self, transaction=False):
        return self

    def llen(self, key):
        pass

    def execute(self):
        if self.down:
            raise ConnectionError("Redis is away")
        return [1, 0, 0, 0] * 64


def samples(collector) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in collector.collect()
        for s in family.samples
    }


def errors_of(errors: CollectErrors) -> dict[str, float]:
    return {dict(lbl)["source"]: v for (_, lbl), v in samples(errors).items()}


JOBS = {"redrive-stuck-intents", "daily-report"}


def test_the_postgres_gauges_read_every_family_in_autocommit():
    engine = FakeEngine()
    got = samples(PostgresGauges(engine, jobs=JOBS))
    assert engine.conn.isolation == "AUTOCOMMIT"
    assert got[("clearhouse_outbox_backlog", ())] == 7
    assert got[("clearhouse_webhook_deliveries_pending", ())] == 3
    age = "clearhouse_oldest_processing_age_seconds"
    assert {dict(lbl)["stage"]: v for (n, lbl), v in got.items() if n == age} == {
        "received": 0,
        "limits_checked": 0,
        "risk_scored": 42.5,
        "fee_computed": 0,
    }
    lag = "clearhouse_settlement_lag_seconds"
    assert {dict(lbl)["priority"]: v for (n, lbl), v in got.items() if n == lag} == {
        "instant": 0,
        "standard": 0,
        "economy": 300.0,
    }
    # Only jobs the schedule still has: a removed one must not look stale for ever.
    beat = "clearhouse_beat_job_last_success_timestamp_seconds"
    assert {dict(lbl)["job"]: v for (n, lbl), v in got.items() if n == beat} == {
        "redrive-stuck-intents": NOW
    }


def test_the_pipeline_stages_are_the_four_a_processing_intent_waits_at():
    assert PIPELINE_STAGES == STAGES


def test_a_failing_statement_leaves_out_only_its_family_and_is_counted():
    errors = CollectErrors()
    conn = FakeConn(broken=("webhook_deliveries", "finalized_at"))
    gauges = PostgresGauges(FakeEngine(conn), jobs=JOBS, errors=errors)
    names = {name for name, _ in samples(gauges)}
    assert "clearhouse_webhook_deliveries_pending" not in names
    assert "clearhouse_settlement_lag_seconds" not in names
    assert "clearhouse_outbox_backlog" in names
    assert "clearhouse_beat_job_last_success_timestamp_seconds" in names
    assert errors_of(errors) == {"webhook_deliveries_pending": 1, "settlement_lag": 1}
    samples(gauges)
    assert errors_of(errors)["settlement_lag"] == 2  # a counter: every failed scrape


def test_postgres_unreachable_leaves_out_every_postgres_family(caplog):
    errors = CollectErrors()
    engine = FakeEngine(down=True)
    gauges = PostgresGauges(engine, jobs=JOBS, errors=errors)
    assert samples(gauges) == {}
    assert samples(gauges) == {}
    assert errors_of(errors) == dict.fromkeys(gauges.sources, 2)
    # One line per source when it starts failing, not one per scrape; one when it is back.
    assert caplog.text.count("metrics: outbox_backlog unavailable") == 1
    engine.down = False
    assert samples(gauges)
    assert caplog.text.count("metrics: outbox_backlog readable again") == 1


def test_redis_unreachable_leaves_out_the_queue_depth_and_is_counted():
    errors = CollectErrors()
    assert samples(QueueDepth(FakeRedis(down=True), ["limits"], errors=errors)) == {}
    assert errors_of(errors) == {"queue_depth": 1}
    got = samples(QueueDepth(FakeRedis(), ["limits", "fraud"], errors=errors))
    assert got == {
        ("clearhouse_queue_depth", (("queue", "limits"),)): 1,
        ("clearhouse_queue_depth", (("queue", "fraud"),)): 1,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[str, set]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {f.name: {tuple(sorted(s.labels.items())) for s in f.samples} for f in _parse(text)}


def _parse(text):
    return list(text_string_to_metric_families(text))


@pytest.fixture
def operator_port():
    servers = []

    def serve(settings, **collaborators):
        server = serve_operator_port(settings, **collaborators)
        if server is not None:
            servers.append(server)
        return server

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_operator_port_serves_every_family_and_the_error_counter(operator_port):
    port = _free_port()
    settings = Settings(metrics_port=port)
    server = operator_port(settings, engine=FakeEngine(), redis_client=FakeRedis())
    assert server is not None
    got = _scrape(port)
    for name in PG_FAMILIES | {"clearhouse_queue_depth"}:
        assert name in got, name
    assert len(got["clearhouse_queue_depth"]) >= 5  # every queue of the topology
    # Every source is listed, at 0 until it fails (so rate() has a series to start from).
    sources = {dict(lbl)["source"] for lbl in got["clearhouse_metrics_collect_errors"]}
    assert sources == {
        "queue_depth",
        "outbox_backlog",
        "oldest_processing_age",
        "webhook_deliveries_pending",
        "settlement_lag",
        "beat_job_last_success",
    }
    # The API's own families come along (this process's registry here; the gunicorn
    # workers' files under gunicorn).
    assert "clearhouse_http_requests" in got


def test_the_operator_port_answers_while_postgres_and_redis_are_away(operator_port):
    port = _free_port()
    settings = Settings(metrics_port=port)
    operator_port(settings, engine=FakeEngine(down=True), redis_client=FakeRedis(down=True))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        families = {f.name: f for f in _parse(resp.read().decode())}
    assert not PG_FAMILIES & set(families)
    assert "clearhouse_queue_depth" not in families
    counted = families["clearhouse_metrics_collect_errors"].samples
    errors = {s.labels["source"]: s.value for s in counted}
    assert errors["queue_depth"] == 1 and errors["outbox_backlog"] == 1


def test_port_zero_serves_nothing_and_a_taken_port_is_not_fatal(operator_port, caplog):
    assert operator_port(Settings(metrics_port=0)) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(metrics_port=port)
        assert operator_port(settings, engine=FakeEngine(), redis_client=FakeRedis()) is None
    assert f"metrics port {port} unavailable" in caplog.text


def test_the_operator_port_binds_metrics_addr(operator_port):
    port = _free_port()
    server = operator_port(
        Settings(metrics_port=port, metrics_addr="127.0.0.1"),
        engine=FakeEngine(),
        redis_client=FakeRedis(),
    )
    assert server.server_address == ("127.0.0.1", port)


# -- the relay's port ----------------------------------------------------------


def test_the_relay_serves_its_last_pass_and_counts(monkeypatch):
    from workers.relay import RelayStats, serve_metrics

    stats = RelayStats()
    before = {f.name: f for f in _parse(generate_latest(_registry(stats)).decode())}
    # Never passed yet: no timestamp sample (absent, not 1970).
    assert before["clearhouse_relay_last_pass_timestamp_seconds"].samples == []
    monkeypatch.setattr("workers.relay.time.time", lambda: NOW)
    stats.passed(5)
    stats.passed(0)
    stats.failed()
    port = _free_port()
    server = serve_metrics(Settings(relay_metrics_port=port), stats)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            got = {s.name: s.value for f in _parse(resp.read().decode()) for s in f.samples}
    finally:
        server.shutdown()
        server.server_close()
    assert got["clearhouse_relay_last_pass_timestamp_seconds"] == NOW
    assert got["clearhouse_relay_intents_relayed_total"] == 5
    assert got["clearhouse_relay_pass_failures_total"] == 1
    assert serve_metrics(Settings(relay_metrics_port=0), stats) is None


def _registry(collector):
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


# -- the beat jobs' label -------------------------------------------------------


def test_every_beat_entry_names_the_task_that_records_it():
    from workers import periodic, pipeline  # noqa: F401  (registers the tasks)
    from workers.base import beat_jobs
    from workers.celery_app import app
    from workers.schedule import beat_schedule

    settings = Settings()
    jobs = beat_jobs(settings)
    assert sorted(jobs.values()) == sorted(beat_schedule(settings))
    for task_name, job in jobs.items():
        assert app.tasks[task_name].beat_job == job
    assert app.tasks["clearhouse.limits"].beat_job is None  # a stage is no beat job


# -- the webhook delivery latency ----------------------------------------------


class FakeUnit:
    def __init__(self):
        self.hooks = []

    def on_commit(self, fn):
        self.hooks.append(fn)


def test_delivery_latency_is_observed_only_once_committed():
    from shared.observability import metrics

    def count(first):
        hist = metrics.WEBHOOK_DELIVERY_LATENCY.labels(first)
        return sum(b.get() for b in hist._buckets), hist._sum.get()

    (before_first, sum_first), (before_retried, _) = count("true"), count("false")
    unit = FakeUnit()
    metrics.webhooks_delivered(unit, [(0.2, True), (7200.0, False), (-0.01, True)])
    assert (count("true")[0], count("false")[0]) == (before_first, before_retried)
    for hook in unit.hooks:  # the commit
        hook()
    assert count("true")[0] == before_first + 2
    assert count("true")[1] == pytest.approx(sum_first + 0.2)  # clock skew: never negative
    assert count("false")[0] == before_retried + 1
    empty = FakeUnit()
    metrics.webhooks_delivered(empty, [])
    assert empty.hooks == []
