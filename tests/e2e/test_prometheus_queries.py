"""Every dashboard panel's and alert rule's PromQL, against a real Prometheus scraping the stack.

A Prometheus server of the test's own (Debian's ``prometheus`` package; a free
port, a temp storage folder) scrapes the e2e stack every second: the jobs of
deploy/prometheus/prometheus.yml, each compose target pointed at the stack's
process of the same name (compose services are named after deploy/Procfile's
processes), with the rule files loaded. Flower is not part of the e2e stack:
its job is left out. Load through the HTTP API, a webhook receiver and one
transient database fault makes the series exist; once every target has been
scraped twice since, each expression is queried:

- every ``expr`` of every dashboard panel, Grafana's variables substituted
  (``$__rate_interval`` -> 1m, template variables -> ``.*``), and the metric
  of every ``label_values`` template variable;
- every rule ``expr`` in deploy/prometheus/rules/. An alert's expression is a
  condition (``x > 0``): empty while all is well, so it is queried to see
  that it parses, and the series it compares (``x``) must exist
  (tests/support/monitoring.py ``underlying``).

Each must parse and return at least one series. Every one that does not is
listed in one assertion, with the metrics it names that Prometheus has never
scraped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests import factories as f
from tests.conftest import free_port
from tests.e2e.conftest import E2E_ENV, Client, create_merchant
from tests.support import monitoring, processes
from tests.support.receiver import Receiver
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

ROOT = monitoring.ROOT
# Scrapes every 2 s, each allowed 2 s: the API's operator port reads its gauges
# from Postgres at scrape time, which a loaded machine can hold past 1 s (a
# timed-out scrape marks every series of its target stale).
SCRAPE_S = 2
# The stack's processes that may serve metrics (deploy/Procfile names, as in compose).
STACK = ("api", "relay", "beat", "worker_pipeline", "worker_instant", "worker_background")


def metrics_targets(stack) -> dict[str, str]:
    """host:port where each process of the stack serves /metrics."""
    by_name = {p.name: p for p in stack["logs"]}
    api = by_name["gunicorn"]
    # The API's operator port when it has one, else /metrics on its own port.
    api_port = getattr(api, "metrics_port", None) or urlsplit(stack["url"]).port
    found = {"api": f"127.0.0.1:{api_port}"}
    for name, worker in stack["workers"].items():
        found[f"worker_{name}"] = f"127.0.0.1:{worker.metrics_port}"
    for name in ("relay", "beat"):
        port = getattr(by_name.get(name), "metrics_port", None)
        if port:
            found[name] = f"127.0.0.1:{port}"
    return found


def scrape_config(targets: dict[str, str], problems: list[str]) -> dict:
    """deploy/prometheus/prometheus.yml with the stack's ports, every second."""
    deployed = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = []
    for job in deployed.get("scrape_configs") or []:
        mine = []
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                service = target.rsplit(":", 1)[0]
                if service in targets:
                    mine.append(targets[service])
                elif service in STACK:
                    problems.append(
                        f"job {job['job_name']}: target {target}: the e2e stack's {service}"
                        " serves no metrics (tests/support/processes.py gives it no port)"
                    )
        if mine:
            jobs.append(
                {
                    **job,
                    "scrape_interval": f"{SCRAPE_S}s",
                    "scrape_timeout": f"{SCRAPE_S}s",
                    "static_configs": [{"targets": mine}],
                }
            )
    return {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": rule_files(problems),
        "scrape_configs": jobs,
    }


def rule_files(problems: list[str]) -> list[str]:
    """The rule files Prometheus loads; one that promtool refuses would stop it starting,
    so it is left out and said (its expressions are still queried, one by one)."""
    found = []
    for path in sorted(monitoring.RULES.glob("*.y*ml")):
        if "groups" not in (yaml.safe_load(path.read_text()) or {}):
            continue  # promtool's rule tests, not rules
        check = subprocess.run(
            [shutil.which("promtool") or "promtool", "check", "rules", "--lint=none", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check.returncode == 0:
            found.append(str(path))
        else:
            problems.append(f"rule file {path.name} does not load:\n{check.stdout}{check.stderr}")
    return found


class Prometheus:
    def __init__(self, url: str, process: processes.Process, problems: list[str]):
        self.url = url
        self.process = process
        self.problems = problems  # found on the way: listed with the failing expressions
        self.expected = 0  # targets configured

    def all_up(self) -> bool:
        targets = self.targets()
        return len(targets) == self.expected and all(t["health"] == "up" for t in targets)

    def wait_all_up(self, timeout: float = 30) -> None:
        """Wait until every target is up; those that never come up join the problems."""
        try:
            until(self.all_up, timeout=timeout, what="every target up")
        except AssertionError:
            self.problems += [
                f"target {t['labels']['job']} {t['scrapeUrl']} is {t['health']}: {t['lastError']}"
                for t in self.targets()
                if t["health"] != "up"
            ]

    def api(self, path: str, **params) -> dict:
        return requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()

    def query(self, expr: str, at: float | None = None) -> dict:
        return self.api("query", query=expr, **({} if at is None else {"time": at}))

    def targets(self) -> list[dict]:
        return self.api("targets", state="active")["data"]["activeTargets"]

    def settled_after(self, t: float, times: int = 2) -> float | None:
        """A moment when every target had been scraped ``times`` times since ``t`` and
        the last scrape of each had succeeded, or None (not yet).

        The queries are evaluated at that moment: a scrape that fails later (a
        slow answer under load) would make its target's series stale at "now",
        and the answer would depend on when the test runs. Counted, not read
        off the last scrape's time: a target first scraped after ``t`` has one
        sample, and ``rate()`` needs two.
        """
        since = int(time.time() - t)  # whole seconds, all after t
        if since < 1 or len(self.targets()) != self.expected:
            return None
        answer = self.query(f"min(count_over_time(up[{since}s])) and on() (min(up) == 1)")
        result = answer["data"]["result"]
        if not result or float(result[0]["value"][1]) < times:
            return None
        return float(result[0]["value"][0])


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("needs Debian's prometheus package (apt-get install prometheus)", pytrace=False)
    problems: list[str] = []
    config = scrape_config(metrics_targets(stack), problems)
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [
        binary,
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    with processes.Process("prometheus", argv) as proc:
        until(
            lambda: _ready(url) or proc.proc.poll() is not None,
            timeout=30,
            what=lambda: f"prometheus to be ready:\n{proc.output()[-3000:]}",
        )
        assert proc.proc.poll() is None, f"prometheus exited:\n{proc.output()[-3000:]}"
        prom = Prometheus(url, proc, problems)
        prom.expected = sum(
            len(j["static_configs"][0]["targets"]) for j in config["scrape_configs"]
        )
        yield prom


# --- load ----------------------------------------------------------------------


def sample(port: int, name: str, **labels) -> float | None:
    """The value of one sample a process serves on its metrics port (None: not there)."""
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return s.value
    return None


def send_task(name: str, *args) -> None:
    """Send a beat job to the e2e stack's broker, as beat would (tests/e2e/test_refund_race.py)."""
    from workers.celery_app import app

    prefix = {"global_keyprefix": E2E_ENV["REDIS_KEY_PREFIX"]}
    options = {**app.conf.broker_transport_options, **prefix}
    with app.connection(transport_options=options) as conn:
        app.send_task(name, args=list(args), connection=conn)


def created(client: Client, body: dict) -> str:
    r = client.post("/v1/payment_intents", body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def pending_deliveries(e2e_engine, merchant_id: str) -> int:
    with e2e_engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM webhook_deliveries"
                " WHERE merchant_id = :m AND status = 'pending'"
            ),
            {"m": merchant_id},
        ).scalar_one()


def drive_load(stack, e2e_engine) -> None:
    """Payments of every kind, webhook attempts of every outcome, a settlement window, a
    report, a delivery failed unsent, and a transient database fault: one merchant's doing.

    One merchant (each CLI run costs seconds): its receiver first answers 500
    (http_error), then is down (network_error), then takes every delivery.
    """
    background = stack["workers"]["background"].metrics_port
    port = free_port()
    merchant = create_merchant("metrics", "--webhook-url", f"http://127.0.0.1:{port}/hooks")
    receiver = Receiver([merchant["webhook_secret"]], port)
    receiver.mode = "fail"
    receiver.start()
    try:
        client = Client(stack["url"], merchant)
        priorities = ("instant", "standard", "economy")
        paid = {p: created(client, f.card_body(f.new_card(), 1500, priority=p)) for p in priorities}
        failed = [created(client, f.card_body(card)) for card in (f.DECLINE, f.FRAUD)]
        held = created(
            client, f.card_body(f.new_card(), 5000, capture_method="manual", priority="instant")
        )
        bad = {**f.card_body(), "amount": "12.5"}
        assert client.post("/v1/payment_intents", bad).status_code == 400

        receiver.wait_for(lambda r: sum(r.hits.values()) >= 1, timeout=30)
        receiver.stop()
        until(
            lambda: sample(
                background, "clearhouse_webhook_attempts_total", outcome="network_error"
            ),
            timeout=30,
            what="a webhook attempt to fail with a network error",
        )
        receiver.mode = "ok"
        receiver.start()

        for intent_id in [*paid.values(), *failed]:
            client.wait(intent_id, final=("succeeded", "failed"))
        assert client.wait(held)["status"] == "requires_capture"
        r = client.post(f"/v1/payment_intents/{held}/capture", {"amount_to_capture": 3000})
        assert r.status_code == 200, r.text
        r = client.post("/v1/refunds", {"payment_intent": paid["instant"], "amount": 500})
        assert r.status_code in (200, 201), r.text
        # Hourly and daily jobs would not run within the test: send each once, so
        # every beat job has its last-success series (BeatJobStale compares them).
        send_task("clearhouse.scheduler.prune_idempotency_keys")
        send_task("clearhouse.scheduler.settle_standard")
        send_task("clearhouse.scheduler.daily_report", datetime.now(UTC).date().isoformat())
        until(
            lambda: (
                client.get(f"/v1/payment_intents/{paid['standard']}").json()["settlement_status"]
                == "settled"
            ),
            timeout=30,
            what="the standard window to settle",
        )
        until(
            lambda: sample(background, "clearhouse_reconciliation_discrepancies") is not None,
            timeout=30,
            what="the daily report's reconciliation",
        )
        # Every delivery made: none goes on retrying once the receiver stops.
        until(
            lambda: (
                receiver.received and not pending_deliveries(e2e_engine, merchant["merchant_id"])
            ),
            timeout=30,
            what="every delivery to the receiver",
        )
    finally:
        receiver.stop()

    # As after a restore under other keys: the secret names a key this deployment
    # lacks. The next event's deliveries fail unsent (a prepare failure, "secret").
    with e2e_engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE webhook_endpoints SET secret_enc ="
                " 'retired:' || split_part(secret_enc, ':', 2) WHERE merchant_id = :id"
            ),
            {"id": merchant["merchant_id"]},
        )
    created(client, f.card_body())
    until(
        lambda: sample(background, "clearhouse_webhook_prepare_failures_total", reason="secret"),
        timeout=30,
        what="a delivery to be failed unsent",
    )
    transient_database_fault(client, background, e2e_engine)


def transient_database_fault(client: Client, background: int, e2e_engine) -> None:
    """A task retry and a 503, from a real fault: webhook_deliveries locked, waiters cut off.

    Every intent create and the beat job that dispatches due webhooks wait for
    the lock; their connections are terminated, a transient error: the API
    answers 503, the task retries.
    """
    answers: list[requests.Response] = []
    thread = threading.Thread(
        target=lambda: answers.append(client.post("/v1/payment_intents", f.card_body()))
    )
    with e2e_engine.connect() as conn:
        conn.execute(text("LOCK TABLE webhook_deliveries IN ACCESS EXCLUSIVE MODE"))
        thread.start()

        def cut_off_waiters():
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                )
            )
            return answers and sample(background, "clearhouse_task_retries_total")

        until(cut_off_waiters, timeout=30, what="a task retry and the API's answer")
        conn.rollback()
    thread.join(15)
    assert answers[0].status_code == 503, answers[0].text


@pytest.fixture(scope="module")
def loaded(prometheus, stack, e2e_engine):
    # Prometheus finds its targets while the load runs (it applies them 5 s in).
    drive_load(stack, e2e_engine)
    done = time.time()
    prometheus.wait_all_up()
    at = until(
        lambda: prometheus.settled_after(done),
        timeout=60,
        what="two scrapes of every target after the load, the last ones all up",
    )
    return prometheus, at


# --- the queries ------------------------------------------------------------------

_METRIC = re.compile(r"\b(clearhouse_[a-z0-9_]+|up)\b")


def check(
    prom: Prometheus, at: float, where: str, expr: str, known: set[str], series=True
) -> list[str]:
    """Why ``expr`` fails at time ``at`` (parse error, no series), or nothing."""
    answer = prom.query(expr, at)
    if answer.get("status") != "success":
        why = f"does not parse: {answer.get('error')}"
    elif series and not answer["data"]["result"]:
        unknown = sorted({m for m in _METRIC.findall(expr) if m not in known})
        why = "no series" + (f" (never scraped: {', '.join(unknown)})" if unknown else "")
    else:
        return []
    return [f"{where}\n    {expr}\n    -> {why}"]


def test_every_dashboard_and_alert_expression_returns_series(loaded):
    prom, at = loaded
    known = set(prom.api("label/__name__/values")["data"])
    failures = list(prom.problems)
    checked = 0
    for _, dashboard in monitoring.dashboards():
        for where, expr in monitoring.panel_queries(dashboard):
            failures += check(prom, at, where, monitoring.grafana_expr(expr), known)
            checked += 1
        for name, selector, label in monitoring.variable_queries(dashboard):
            expr = f"count by ({label}) ({monitoring.grafana_expr(selector)})"
            failures += check(prom, at, f"{dashboard['title']} / variable {name}", expr, known)
            checked += 1
    for where, rule in monitoring.rules():
        name = rule.get("alert") or rule.get("record")
        where = f"rule {where} / {name}"
        if "record" in rule:
            failures += check(prom, at, where, rule["expr"], known)
        else:
            # The condition itself must parse; what it compares must exist.
            failures += check(prom, at, where, rule["expr"], known, series=False)
            parts = monitoring.underlying(rule["expr"])
            if not parts:
                failures.append(f"{where}\n    {rule['expr']}\n    -> compares no series")
            for part in parts:
                failures += check(prom, at, f"{where} (compared series)", part, known)
        checked += 1
    assert checked
    assert not failures, f"{len(failures)} of {checked} expressions fail:\n" + "\n".join(failures)
