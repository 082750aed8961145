"""Load benchmark: ``python -m tests.load.bench`` (``make bench``).

Builds its own environment (a fresh Postgres database, Redis db 7, a temporary
key directory), starts the stack with the process layout of deploy/Procfile,
drives a fixed offered rate of payment intents from a separate load-generator
process for BENCH_DURATION_S after a BENCH_WARMUP_S warm-up, waits for the
pipeline to drain, and reports client-side and Postgres-side figures. The last
line of stdout is one JSON object (also written to bench-results.json).
tests/load/README.md defines every figure.

Environment (defaults in brackets): BENCH_RATE [110] offered intents/s,
BENCH_DURATION_S [60], BENCH_WARMUP_S [5], BENCH_RUNS [1] (median of N runs,
fresh database each), BENCH_DRAIN_S [60], BENCH_CONNECTIONS [auto] generator
threads, BENCH_KEEP_DB=1 keeps the database, BENCH_KEEP_LOGS=1 keeps the
process logs, WEB_CONCURRENCY [3], ACQUIRER_LATENCY_MS [0], BENCH_WEBHOOKS [0]
(1: the merchant gets a webhook URL served by tests/load/webhook_sink.py in a
process of its own, and webhook figures are added), BENCH_REFERENCE [0] (1: then
a bare Falcon app, tests/load/bare_app.py, and the intake alone are driven closed
loop and at half load, in BENCH_REFERENCE_ROUNDS [2] alternating slices of
BENCH_REFERENCE_S [10]; BENCH_REFERENCE_RATE, BENCH_REFERENCE_CONNECTIONS),
BENCH_REDIS_DB [7]; BENCH_PROFILE [0] (1: py-spy samples every process during the
window, tests/load/profiling.py: the top functions per process go into the JSON's
``cpu.profile``, the raw stacks into BENCH_PROFILE_DIR [bench-profiles/]);
DATABASE_URL and REDIS_URL name the servers (their db name / number are replaced);
BROKER_URL=amqp://... puts the Celery messages on RabbitMQ, each run in a vhost of
its own (``settings.broker`` in the JSON says which).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import random
import resource
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from tests.load import profiling
from workers.topology import INSTANT_QUEUES

ROOT = Path(__file__).resolve().parents[2]
RESULTS_FILE = ROOT / "bench-results.json"
# The bench's Redis db (flushed): BENCH_REDIS_DB lets two benches share a Redis server.
REDIS_DB = 7
FINAL = ("succeeded", "failed", "requires_capture", "canceled")
PRIORITIES = ("instant", "standard", "economy")
TARGET_COMPLETED_PER_S = 100
TARGET_ACCEPT_P99_MS = 50
# Refresh the access token this long before it expires.
TOKEN_MARGIN_S = 60
# Each reference slice's warm-up (not counted): connections open, workers warm.
REFERENCE_WARMUP_S = 2
REFERENCE_PHASES = ("bare_max", "intake_max", "bare_half", "intake_half")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


def percentiles(values, qs=(50, 95, 99)) -> dict | None:
    """Linear-interpolated percentiles (like numpy's default), ms rounded to 0.01."""
    if not values:
        return None
    s = sorted(values)
    out = {}
    for q in qs:
        k = (len(s) - 1) * q / 100
        lo, hi = math.floor(k), math.ceil(k)
        out[f"p{q}"] = round(s[lo] + (s[hi] - s[lo]) * (k - lo), 2)
    return out


# --------------------------------------------------------------------------
# Load generator (runs in its own process: `python -m tests.load.bench --generate CFG`)
#
# Open loop: thread k of T sends request j at t0 + (j*T + k)/rate, so the
# offered rate does not drop when the server slows down (unless every thread
# is blocked; then `send_lag_ms` shows it). Each thread keeps one
# http.client connection (re-opened when gunicorn's sync workers close it).
# Closed loop (rate None, the reference's max-rate phases): each thread sends
# its next request as soon as the previous one is answered.
# --------------------------------------------------------------------------


class _Token:
    def __init__(self, host: str, port: int, client_id: str, client_secret: str):
        self._addr = (host, port)
        self._creds = {"client_id": client_id, "client_secret": client_secret}
        self._lock = threading.Lock()
        self._value = ""
        self._refresh_at = 0.0
        self.refreshes = 0

    def get(self, force: bool = False) -> str:
        if not force and time.monotonic() < self._refresh_at:
            return self._value
        with self._lock:
            if force or time.monotonic() >= self._refresh_at:
                self._value, ttl = fetch_token(*self._addr, **self._creds)
                self._refresh_at = time.monotonic() + max(ttl - TOKEN_MARGIN_S, ttl / 2)
                self.refreshes += 1
            return self._value


def fetch_token(host: str, port: int, client_id: str, client_secret: str) -> tuple[str, int]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        body = json.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            }
        )
        conn.request("POST", "/v1/oauth/token", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"token request: HTTP {resp.status}: {data[:300]!r}")
        doc = json.loads(data)
        return doc["access_token"], int(doc.get("expires_in") or 900)
    finally:
        conn.close()


def _code(body: bytes) -> str | None:
    """A problem+json answer's ``code`` (None if the body is not one)."""
    try:
        return json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None


def shed_answer_checks(status: int, resp, body: bytes) -> Counter:
    """Counts of what a shed answer carried: Retry-After, problem+json (issue 12, item 5)."""
    kind = f"shed_{status}"
    problem = resp.getheader("Content-Type", "").startswith("application/problem+json")
    try:
        doc = json.loads(body)
        problem = problem and all(k in doc for k in ("type", "title", "status", "detail"))
    except ValueError:
        problem = False
    return Counter(
        {
            kind: 1,
            f"{kind}_retry_after": int(bool(resp.getheader("Retry-After"))),
            f"{kind}_problem_json": int(problem),
        }
    )


def generate(cfg: dict) -> dict:
    """Drive the load described by ``cfg``; return raw per-request figures."""
    from tests.load.mix import idempotency_key, intent_body

    host, port = cfg["host"], cfg["port"]
    rate, threads = cfg["rate"], cfg["threads"]
    t0_wall, warmup, duration = cfg["t0"], cfg["warmup_s"], cfg["duration_s"]
    path = cfg.get("path", "/v1/payment_intents")
    token = _Token(host, port, cfg["client_id"], cfg["client_secret"]) if cfg["client_id"] else None
    if token:
        token.get()
    # Map the wall-clock schedule onto the monotonic clock once.
    t0 = time.monotonic() + (t0_wall - time.time())
    win_start, end = t0 + warmup, t0 + warmup + duration
    lock = threading.Lock()
    latencies: list[float] = []  # accepted in window, ms, from actual send
    lags: list[float] = []  # in window: actual send - scheduled send, ms
    errors: Counter = Counter()
    counts = Counter()

    def worker(k: int) -> None:
        rng = random.Random(secrets.randbits(64))
        conn = http.client.HTTPConnection(host, port, timeout=30)
        my_lat, my_lag, my_err, my_counts = [], [], Counter(), Counter()
        j = 0
        while True:
            sched = t0 + (j * threads + k) / rate if rate else max(time.monotonic(), t0)
            j += 1
            if sched >= end:
                break
            if time.monotonic() >= end:
                # Behind schedule when the load stops: these were never offered.
                my_counts["unsent"] += 1
                continue
            delay = sched - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = json.dumps(intent_body(rng))
            in_window = sched >= win_start
            started = time.monotonic()
            kind, shed = None, False
            try:
                for attempt in (0, 1):
                    headers = {"Content-Type": "application/json"}
                    if token:
                        headers["Authorization"] = "Bearer " + token.get(force=attempt == 1)
                        headers["Idempotency-Key"] = idempotency_key()
                    conn.request("POST", path, body, headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                    if resp.status != 401 or not token:
                        break
                if resp.status != 202:
                    kind = f"http_{resp.status}"
                    # Admission control's refusal (MAX_BACKLOG), told from an outage's 503,
                    # or a rate limit's 429: load the API turned away, on purpose.
                    shed = resp.status == 429 or (
                        resp.status == 503 and _code(answer) == "overloaded"
                    )
                    if shed:
                        my_counts.update(shed_answer_checks(resp.status, resp, answer))
            except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
                kind = type(exc).__name__
                conn.close()
            done = time.monotonic()
            if win_start <= done < end and kind is None:
                # accepted_per_s counts 202s *received* inside the window.
                my_counts["accepted_in_window"] += 1
            if in_window:
                my_counts["sent"] += 1
                my_lag.append((started - sched) * 1000)
                if kind is None:
                    my_counts["accepted"] += 1
                    my_lat.append((done - started) * 1000)
                else:
                    my_err[kind] += 1
                    my_counts["shed"] += shed
            else:
                my_counts["warmup_sent"] += 1
                if kind is not None:
                    my_err["warmup:" + kind] += 1
        conn.close()
        with lock:
            latencies.extend(my_lat)
            lags.extend(my_lag)
            errors.update(my_err)
            counts.update(my_counts)

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "latencies_ms": latencies,
        "send_lag_ms": lags,
        "errors": dict(errors),
        "counts": dict(counts),
        "token_fetches": token.refreshes if token else 0,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "finished_at": time.time(),
    }


# --------------------------------------------------------------------------
# CPU accounting from /proc (Linux): who used the 2 cores during the window.
# --------------------------------------------------------------------------

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (pgid, comm, cpu seconds) for every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is state (field 3); pgrp is field 5, utime 14, stime 15.
        table[int(entry)] = (int(fields[2]), comm, (int(fields[11]) + int(fields[12])) / _CLK)
    return table


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds summed over all cores, from /proc/stat."""
    parts = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts) - idle) / _CLK, sum(parts) / _CLK


class CpuSampler:
    def __init__(self, groups: dict[str, int]):
        self.groups = groups  # name -> process group id (each child is a session leader)

    def snapshot(self) -> dict:
        by = Counter()
        pg_to_name = {pg: name for name, pg in self.groups.items()}
        for pid, (pgid, comm, cpu) in _proc_table().items():
            if pgid in pg_to_name:
                by[pg_to_name[pgid]] += cpu
            elif comm == "postgres" or comm.startswith("postgres:"):
                by["postgres (all databases)"] += cpu
            elif comm.startswith("redis-server"):
                by["redis-server"] += cpu
            elif pid == os.getpid():
                by["bench (this process)"] += cpu
        busy, total = _machine_cpu()
        return {"by": by, "busy": busy, "total": total}

    @staticmethod
    def diff(a: dict, b: dict, seconds: float) -> dict:
        """CPU use between two snapshots, in cores (1.0 = one core busy)."""
        keys = set(a["by"]) | set(b["by"])
        per = {k: round((b["by"].get(k, 0) - a["by"].get(k, 0)) / seconds, 3) for k in keys}
        busy = (b["busy"] - a["busy"]) / seconds
        # Whatever else ran on the machine (other test runs, the kernel, ...).
        per["other (not ours)"] = round(max(busy - sum(per.values()), 0.0), 3)
        return {
            "machine_busy_cores": round(busy, 3),
            "by_process_cores": dict(sorted(per.items(), key=lambda kv: -kv[1])),
        }


# --------------------------------------------------------------------------
# One run: environment, stack, load, drain, figures.
# --------------------------------------------------------------------------


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_problems(text: str) -> dict:
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "error_lines": sum(1 for line in text.splitlines() if " ERROR" in line or "ERROR/" in line),
    }


# Used only if deploy/Procfile cannot be read.
DEFAULT_WORKERS = {
    "worker_pipeline": dict(queues="limits,fraud,fees,authorize", pool="prefork", concurrency=2),
    "worker_instant": dict(queues=",".join(INSTANT_QUEUES), pool="solo", concurrency=1),
    "worker_background": dict(
        queues="settlement.standard,settlement.economy,notifications", pool="solo", concurrency=1
    ),
}


def procfile_workers() -> dict:
    """The Celery workers of deploy/Procfile (name -> queues, pool, concurrency)."""
    import shlex

    out = {}
    try:
        lines = (ROOT / "deploy" / "Procfile").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        name, sep, cmd = line.partition(":")
        if not sep or line.startswith("#") or " worker " not in f" {cmd} ":
            continue
        argv = shlex.split(cmd)
        opts = {"pool": "prefork", "concurrency": None, "queues": None, "nice": 0}
        for i, arg in enumerate(argv[:-1]):
            if arg == "nice" and argv[i + 1] == "-n":
                opts["nice"] = int(argv[i + 2])
            elif arg in ("-Q", "--queues"):
                opts["queues"] = argv[i + 1]
            elif arg in ("-P", "--pool"):
                opts["pool"] = argv[i + 1]
            elif arg in ("-c", "--concurrency"):
                opts["concurrency"] = int(argv[i + 1])
        if opts["queues"]:
            opts["concurrency"] = opts["concurrency"] or (1 if opts["pool"] == "solo" else 2)
            out[name.strip()] = opts
    out = out or {k: dict(v) for k, v in DEFAULT_WORKERS.items()}
    return {k: {"name": k.removeprefix("worker_"), **v} for k, v in out.items()}


def _stop(proc, timeout: float = 20) -> None:
    """Warm shutdown: SIGTERM to the main process only, then the helper's stop().

    The helper signals the whole process group, so a prefork worker's pool
    children get SIGTERM at the same time as their parent and die mid-task
    (WorkerLostError tracebacks, redelivered messages). Signalling only the
    parent lets Celery finish the tasks at hand and stop its own children.
    """
    if proc.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.proc.pid, signal.SIGTERM)
        with contextlib.suppress(Exception):
            proc.proc.wait(timeout)
    proc.stop()  # the group: stragglers, and closes the log


class Run:
    def __init__(self, index: int, opts: dict, template: str | None = None, report: bool = False):
        self.index = index
        self.opts = opts
        # BENCH_PRELOAD: the database is a copy of this template; ``report`` times the
        # daily report on it first (tests/load/preload.py).
        self.template, self.report = template, report
        self.procs: dict = {}
        from shared.config import with_user

        base_db = os.environ.get(
            "DATABASE_URL", "postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/clearhouse"
        )
        base_admin = os.environ.get("MIGRATION_DATABASE_URL") or with_user(base_db)
        base_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.db_name = f"clearhouse_bench_{secrets.token_hex(4)}"
        self.key_dir = tempfile.mkdtemp(prefix="clearhouse-bench-keys-")
        self.env = {
            "DATABASE_URL": _with_db(base_db, self.db_name),
            "MIGRATION_DATABASE_URL": _with_db(base_admin, self.db_name),
            "REDIS_URL": base_redis.rsplit("/", 1)[0] + f"/{opts['redis_db']}",
            "CLEARHOUSE_KEY_DIR": self.key_dir,
            "ACQUIRER_LATENCY_MS": str(opts["acquirer_latency_ms"]),
            "WEB_CONCURRENCY": str(opts["web_concurrency"]),
            # One merchant from one address offers the whole load (500/s and more), past
            # its per-client and per-IP limits: limits no rate reaches, so the limiter
            # still runs (its cost is in the figures) and never refuses.
            "RATE_LIMIT_PER_CLIENT": "1000000",
            "RATE_LIMIT_PER_IP": "1000000",
        }
        if opts["broker"] == "rabbitmq":
            # A vhost per run (made with rabbitmqctl, dropped at exit): a fresh broker.
            from tests.support import rabbitmq

            self.env["BROKER_URL"] = rabbitmq.vhost_url(os.environ["BROKER_URL"], self.db_name)
        if opts["backlog_economy"]:
            # Admission control counts every processing intent: with the economy backlog
            # past MAX_BACKLOG it would refuse every create of the measured phase, which
            # would measure admission control (BENCH_OVERLOAD does), not priority isolation.
            self.env["MAX_BACKLOG"] = "0"
        if opts["webhooks"]:
            # The sink listens on 127.0.0.1, which the SSRF policy refuses by default.
            self.env["WEBHOOK_ALLOW_PRIVATE"] = "true"
        self.sink_port = _free_port() if opts["webhooks"] else None
        self.engine = None
        self.db_created = False

    # -- setup ---------------------------------------------------------------

    def setup(self) -> None:
        import redis

        from shared.config import Settings
        from shared.db.engine import get_engine
        from shared.db.migrate import upgrade
        from shared.db.uow import UnitOfWork
        from shared.security.signing import SigningKeys
        from shared.security.vault import Vault
        from shared.services.merchants import create_merchant

        log(f"run {self.index + 1}: database {self.db_name}, redis db {self.opts['redis_db']}")
        self.db_created = True  # from here on, drop it at the end even if upgrade fails
        if self.template:
            from tests.load import preload

            preload.copy_database(self.env["MIGRATION_DATABASE_URL"], self.template, self.db_name)
            log(f"run {self.index + 1}: a copy of {self.template}")
            if self.report:
                self.daily_report = preload.daily_report(
                    self.env["DATABASE_URL"], self.opts["preload"], self.opts["preload_day_intents"]
                )
                log(f"preload: daily report {self.daily_report}")
        upgrade(self.env["MIGRATION_DATABASE_URL"])
        r = redis.Redis.from_url(self.env["REDIS_URL"])
        r.flushdb()
        r.close()
        self.settings = Settings.from_env(
            database_url=self.env["DATABASE_URL"],
            redis_url=self.env["REDIS_URL"],
            broker_url=self.env.get("BROKER_URL", ""),
            key_dir=self.key_dir,
            acquirer_latency_ms=self.opts["acquirer_latency_ms"],
        )
        # Create the key files here, before several children race to.
        SigningKeys.from_settings(self.settings)
        vault = Vault.from_settings(self.settings)
        self.engine = get_engine(
            self.env["DATABASE_URL"], "worker", self.settings.db_timeouts_worker
        )
        webhook_url = f"http://127.0.0.1:{self.sink_port}/hooks" if self.sink_port else None
        with UnitOfWork(self.engine) as u:
            self.merchant = create_merchant(
                u, vault, "Bench merchant", webhook_url, allow_private=True
            )
            u.commit()
        log(
            f"merchant {self.merchant['merchant_id']}"
            + (f", webhooks to {webhook_url}" if webhook_url else "")
        )

    def start_stack(self) -> None:
        from tests.support import processes as P

        env = self.env
        if self.sink_port:
            self._start_sink(P)
        self.port = _free_port()
        log(f"starting gunicorn ({self.opts['web_concurrency']} workers) on port {self.port}")
        self.procs["api"] = self._start_api(P, env)
        starts = procfile_workers()
        for key, kw in starts.items():
            log(f"starting {key}: -Q {kw['queues']} --pool {kw['pool']} -c {kw['concurrency']}")
            self.procs[key] = P.celery_worker(env=env, **kw)
        self.workers_layout = {k: dict(kw) for k, kw in starts.items()}
        self.procs["relay"] = P.relay(env=env, nice=max(w["nice"] for w in starts.values()))
        self.procs["beat"] = P.celery_beat(env=env)
        log("stack is up: " + ", ".join(f"{k} pid {p.proc.pid}" for k, p in self.procs.items()))

    def _start_sink(self, P) -> None:
        """The webhook receiver, in a process (and process group) of its own."""
        self.sink_dir = tempfile.mkdtemp(prefix="clearhouse-bench-sink-")
        self.sink_out = Path(self.sink_dir) / "receipts.json"
        argv = [
            sys.executable,
            "-m",
            "tests.load.webhook_sink",
            str(self.sink_port),
            str(self.sink_out),
        ]
        env = {"BENCH_WEBHOOK_SECRET": self.merchant["webhook_secret"]}
        self.procs["webhook_sink"] = P.Process("webhook_sink", argv, env)
        self.procs["webhook_sink"].wait_for("webhook_sink: listening", timeout=30)
        log(f"webhook sink on port {self.sink_port}")

    def _collect_sink(self) -> list:
        """Stop the sink (SIGTERM: it writes its records) and read them."""
        proc = self.procs["webhook_sink"]
        if proc.proc.poll() is None:
            os.kill(proc.proc.pid, signal.SIGTERM)
            proc.proc.wait(timeout=30)
        if not self.sink_out.exists():
            raise RuntimeError(f"webhook sink wrote no records:\n{proc.output()[-3000:]}")
        return json.loads(self.sink_out.read_text())

    def _start_api(self, P, env, attempts: int = 20):
        # The API may still be under construction: retry a broken import for a while.
        for attempt in range(attempts):
            try:
                return P.gunicorn(self.port, workers=self.opts["web_concurrency"], env=env)
            except RuntimeError as exc:
                if attempt == attempts - 1 or not self.opts["wait_for_api"]:
                    raise
                log(f"API not up yet ({str(exc).strip().splitlines()[-1][:160]}); retry in 15 s")
                time.sleep(15)
        raise AssertionError("unreachable")

    def smoke(self) -> None:
        """One intent end to end before the clock starts: fail fast and clearly."""
        token, ttl = fetch_token(
            "127.0.0.1", self.port, self.merchant["client_id"], self.merchant["client_secret"]
        )
        self.token_ttl_s = ttl
        from tests.factories import APPROVE, card_body

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(
            "POST",
            "/v1/payment_intents",
            json.dumps(card_body(APPROVE, priority="instant", capture_method="automatic")),
            {
                "Content-Type": "application/json",
                "Authorization": "Bearer " + token,
                "Idempotency-Key": "bench-smoke-" + secrets.token_hex(8),
            },
        )
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status != 202:
            raise RuntimeError(f"smoke intent: HTTP {resp.status}: {data[:500]!r}")
        intent_id = json.loads(data)["id"]
        from tests.factories import wait_until_final

        row = wait_until_final(self.engine, [intent_id], timeout=30)[intent_id]
        log(f"smoke intent {intent_id}: {row.status} (token ttl {ttl} s)")

    # -- load ----------------------------------------------------------------

    def drive(self, rate: float | None = None, label: str = "loadgen") -> dict:
        """Offer ``rate`` intents/s (BENCH_RATE) for the warm-up and the window; the result."""
        o = self.opts
        rate = rate or o["rate"]
        connections = o["connections"] if rate == o["rate"] else _connections_for(rate)
        self.offered_rate = rate
        t0 = time.time() + 1.5  # time for the generator to import and fetch a token
        cfg = {
            "host": "127.0.0.1",
            "port": self.port,
            "client_id": self.merchant["client_id"],
            "client_secret": self.merchant["client_secret"],
            "rate": rate,
            "threads": connections,
            "t0": t0,
            "warmup_s": o["warmup_s"],
            "duration_s": o["duration_s"],
        }
        gen, work = self._spawn_generator(cfg, label)
        groups = {name: p.proc.pid for name, p in self.procs.items()}
        sampler = CpuSampler(groups)
        self.window = (t0 + o["warmup_s"], t0 + o["warmup_s"] + o["duration_s"])
        log(
            f"load ({label}): {rate}/s offered, {connections} connections, "
            f"warm-up {o['warmup_s']} s, measured {o['duration_s']} s"
        )
        self._sleep_until(self.window[0], gen)
        profilers = self._start_profilers(label) if o["profile"] else None
        cpu_a = sampler.snapshot()
        xact_a, redis_a = self._db_xacts(), self._redis_cmds()
        last = self.window[0]
        while time.time() < self.window[1]:
            self._sleep_until(min(self.window[1], time.time() + 10), gen)
            if time.time() - last >= 9.9 and time.time() < self.window[1] - 1:
                last = time.time()
                self._progress(last)
        cpu_b = sampler.snapshot()
        xact_b, redis_b = self._db_xacts(), self._redis_cmds()
        self.stages_at_window_end = self._stages()
        self.hooks_pending_at_window_end = self._hooks_pending() if o["webhooks"] else None
        self.cpu = CpuSampler.diff(cpu_a, cpu_b, o["duration_s"])
        if profilers is not None:
            self.cpu["profile"] = profiling.finish(profilers)
        self.db_xacts_per_s = round((xact_b - xact_a) / o["duration_s"], 1)
        self.redis_cmds_per_s = (
            round((redis_b - redis_a) / o["duration_s"], 1)
            if redis_a is not None and redis_b is not None
            else None
        )
        return self._collect_generator(gen, work)

    def _start_profilers(self, label: str) -> list:
        """py-spy on every process of every group of the stack, for the window."""
        groups: dict[str, list[int]] = {}
        table = _proc_table()
        for name, p in self.procs.items():
            groups[name] = sorted(pid for pid, (pgid, _, _) in table.items() if pgid == p.proc.pid)
        out = self.opts["profile_dir"] / f"{self.db_name}-{label}"
        log(f"profiling {sum(map(len, groups.values()))} processes into {out}")
        return profiling.start(groups, self.opts["duration_s"], out)

    def _spawn_generator(self, cfg: dict, name: str = "loadgen"):
        from tests.support.processes import Process

        work = Path(tempfile.mkdtemp(prefix="clearhouse-bench-gen-"))
        (work / "cfg.json").write_text(json.dumps(cfg))
        argv = [sys.executable, "-m", "tests.load.bench", "--generate", str(work)]
        gen = Process(name, argv, self.env)
        self.procs[name] = gen
        return gen, work

    def _collect_generator(self, gen, work: Path) -> dict:
        gen.proc.wait(timeout=60)
        out = work / "result.json"
        if gen.proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"load generator failed:\n{gen.output()[-3000:]}")
        result = json.loads(out.read_text())
        gen.stop()
        shutil.rmtree(work, ignore_errors=True)
        return result

    # -- reference: a bare Falcon app against the intake alone -------------------

    def reference(self) -> dict:
        """BENCH_REFERENCE=1: the bare app and the intake alone, same gunicorn, same generator.

        Runs after the main figures: the stack stops and a fresh API runs alone (as in the
        issue's figure); the intents it accepts here stay unsent.
        """
        from tests.load import bare_app
        from tests.load.reference import (
            combine,
            cpu_ms_per_request,
            half_load_rate,
            max_rate,
            ratio,
            reference_figures,
        )
        from tests.support import processes as P

        o = self.opts
        for proc in self.procs.values():
            _stop(proc)
        # The intake alone, on an API of its own: with the pipeline stopped every intent it
        # accepts stays processing, and admission control would refuse creates (503) once
        # MAX_BACKLOG of them piled up. Its periodic count is all that MAX_BACKLOG=0 saves.
        intake_port = _free_port()
        self.procs["api_alone"] = P.gunicorn(
            intake_port, workers=o["web_concurrency"], env={**self.env, "MAX_BACKLOG": "0"}
        )
        self._create_bare_table(bare_app)
        bare_port = _free_port()
        env = {**self.env, "METRICS_PORT": "0"}
        self.procs["bare"] = P.gunicorn(
            bare_port,
            workers=o["web_concurrency"],
            env=env,
            app="tests.load.bare_app:get_app()",
            health=bare_app.PATH,
        )
        bare = {"port": bare_port, "path": bare_app.PATH, "client_id": ""}
        intake = {
            "port": intake_port,
            "client_id": self.merchant["client_id"],
            "client_secret": self.merchant["client_secret"],
        }
        conns, rounds, dur = o["reference_connections"], o["reference_rounds"], o["reference_s"]
        # Bare and intake take turns, slice by slice, so that both meet the same neighbours
        # on this shared machine (a neighbour's load comes and goes within a minute).
        slices: dict[str, list] = {name: [] for name in REFERENCE_PHASES}
        for _ in range(rounds):
            slices["bare_max"].append(self._phase("bare_max", bare, None, conns))
            slices["intake_max"].append(self._phase("intake_max", intake, None, conns))
        window = rounds * dur
        total = {name: combine(runs) for name, runs in slices.items() if runs}
        bare_max = max_rate(total["bare_max"]["counts"].get("accepted_in_window", 0), window)
        intake_max = max_rate(total["intake_max"]["counts"].get("accepted_in_window", 0), window)
        rate = half_load_rate(intake_max, o["reference_rate"])
        open_conns = _connections_for(rate)
        for _ in range(rounds):
            slices["bare_half"].append(self._phase("bare_half", bare, rate, open_conns))
            slices["intake_half"].append(self._phase("intake_half", intake, rate, open_conns))
        total = {name: combine(runs) for name, runs in slices.items()}
        fig = reference_figures(
            bare_max,
            intake_max,
            rate,
            percentiles(total["bare_half"]["latencies_ms"]),
            percentiles(total["intake_half"]["latencies_ms"]),
        )
        fig["phases"] = {
            name: {
                "rate": "closed loop" if name.endswith("_max") else rate,
                "connections": conns if name.endswith("_max") else open_conns,
                "answered_per_s": max_rate(
                    total[name]["counts"].get("accepted_in_window", 0), window
                ),
                "errors": {
                    k: v for k, v in total[name]["errors"].items() if not k.startswith("warmup:")
                },
                "send_lag_ms": percentiles(total[name]["send_lag_ms"]),
                "loadgen_cpu_cores": round(
                    total[name]["cpu_s"] / (rounds * (dur + REFERENCE_WARMUP_S)), 3
                ),
                # Per slice: what it answered and who used the cores meanwhile.
                "slices": [
                    {
                        "answered_per_s": max_rate(r["counts"].get("accepted_in_window", 0), dur),
                        "cpu": r["cpu"],
                    }
                    for r in runs
                ],
            }
            for name, runs in slices.items()
        }
        # The servers' own CPU per request (gunicorn's processes; Postgres is left out, as
        # its figure covers the whole server, other databases too).
        fig["app_cpu_ms_per_request"] = {
            name: cpu_ms_per_request(
                [
                    (r["cpu"].get(group, 0.0), r["counts"].get("accepted_in_window", 0))
                    for r in slices[name]
                ],
                dur,
            )
            for name, group in (("bare_max", "bare"), ("intake_max", "api_alone"))
        }
        cpu = fig["app_cpu_ms_per_request"]
        fig["bare_vs_intake_app_cpu"] = ratio(cpu["bare_max"], cpu["intake_max"])
        fig["slice_s"], fig["rounds"] = dur, rounds
        return fig

    def _create_bare_table(self, bare_app) -> None:
        import psycopg2
        from sqlalchemy.engine import make_url

        conn = psycopg2.connect(bare_app.libpq_url(self.env["MIGRATION_DATABASE_URL"]))
        try:
            bare_app.create_table(conn, make_url(self.env["DATABASE_URL"]).username)
        finally:
            conn.close()

    def _phase(self, label: str, target: dict, rate: float | None, connections: int) -> dict:
        """One generator run against ``target``; its result plus the servers' CPU in the window."""
        o = self.opts
        t0 = time.time() + 1.5
        cfg = {
            "host": "127.0.0.1",
            "client_secret": "",
            **target,
            "rate": rate,
            "threads": connections,
            "t0": t0,
            "warmup_s": REFERENCE_WARMUP_S,
            "duration_s": o["reference_s"],
        }
        log(
            f"reference {label}: {'closed loop' if rate is None else f'{rate}/s open loop'}, "
            f"{connections} connections, {o['reference_s']} s"
        )
        gen, work = self._spawn_generator(cfg, f"loadgen_{label}")
        sampler = CpuSampler({n: p.proc.pid for n, p in self.procs.items()})
        self._sleep_until(t0 + REFERENCE_WARMUP_S, gen)
        cpu_a = sampler.snapshot()
        self._sleep_until(t0 + REFERENCE_WARMUP_S + o["reference_s"], gen)
        cpu_b = sampler.snapshot()
        result = self._collect_generator(gen, work)
        cpu = CpuSampler.diff(cpu_a, cpu_b, o["reference_s"])
        result["cpu"] = {k: v for k, v in cpu["by_process_cores"].items() if v >= 0.01}
        result["cpu"]["machine_busy_cores"] = cpu["machine_busy_cores"]
        return result

    def _sleep_until(self, wall: float, gen) -> None:
        while True:
            left = wall - time.time()
            if left <= 0:
                return
            if gen.proc.poll() is not None and gen.proc.returncode != 0:
                raise RuntimeError(f"load generator died:\n{gen.output()[-3000:]}")
            time.sleep(min(left, 0.5))

    def _progress(self, now: float) -> None:
        from sqlalchemy import text

        with self.engine.connect() as c:
            row = c.execute(
                text(
                    "SELECT count(*) FILTER (WHERE created_at >= to_timestamp(:a)) AS created,"
                    " count(*) FILTER (WHERE finalized_at >= to_timestamp(:a)) AS finalized,"
                    " count(*) FILTER (WHERE status = 'processing') AS processing"
                    " FROM payment_intents"
                ),
                {"a": now - 10},
            ).one()
        hooks = ""
        if self.opts["webhooks"]:
            with self.engine.connect() as c:
                h = c.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE completed_at >= to_timestamp(:a)) AS done,"
                        " count(*) FILTER (WHERE status = 'pending') AS pending"
                        " FROM webhook_deliveries"
                    ),
                    {"a": now - 10},
                ).one()
            hooks = f"; webhooks done {h.done / 10:.0f}/s, pending {h.pending}"
        log(
            f"  last 10 s: created {row.created / 10:.0f}/s, "
            f"finalized {row.finalized / 10:.0f}/s; processing now {row.processing}{hooks}"
        )

    def _stages(self) -> dict:
        """Where the intents still processing are: stage -> count."""
        from sqlalchemy import text

        with self.engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT stage, count(*) FROM payment_intents WHERE status = 'processing'"
                    " GROUP BY stage ORDER BY 2 DESC"
                )
            ).all()
        return dict(rows)

    def _hooks_pending(self) -> int:
        """Webhook deliveries not yet succeeded or failed (any event), now."""
        from sqlalchemy import text

        with self.engine.connect() as c:
            return int(
                c.execute(
                    text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
                ).scalar()
            )

    def _db_xacts(self) -> int:
        from sqlalchemy import text

        with self.engine.connect() as c:
            return int(
                c.execute(
                    text("SELECT xact_commit FROM pg_stat_database WHERE datname = :n"),
                    {"n": self.db_name},
                ).scalar()
                or 0
            )

    def _redis_cmds(self) -> int | None:
        import redis

        try:
            r = redis.Redis.from_url(self.env["REDIS_URL"])
            n = int(r.info("stats")["total_commands_processed"])
            r.close()
            return n
        except redis.RedisError:
            return None

    def drain(self, limit_s: float | None = None) -> float:
        """Wait (at most BENCH_DRAIN_S, or ``limit_s``, in all) for intents to leave processing
        and, with BENCH_WEBHOOKS=1, for the deliveries of in-window events to finish."""
        from sqlalchemy import text

        limit_s = limit_s or self.opts["drain_s"]
        deadline = time.monotonic() + limit_s
        started = time.monotonic()
        intents_done = False
        ws, we = self.window
        while True:
            with self.engine.connect() as c:
                left = c.execute(
                    text("SELECT count(*) FROM payment_intents WHERE status = 'processing'")
                ).scalar()
                hooks = 0
                if self.opts["webhooks"]:
                    hooks = c.execute(
                        text(
                            "SELECT count(*) FROM webhook_deliveries d"
                            " JOIN events e ON e.id = d.event_id"
                            " WHERE d.status = 'pending' AND e.created_at >= to_timestamp(:ws)"
                            " AND e.created_at < to_timestamp(:we)"
                        ),
                        {"ws": ws, "we": we},
                    ).scalar()
            if not left and not intents_done:
                intents_done = True
                log(f"intents drained in {time.monotonic() - started:.1f} s")
            if not left and not hooks:
                waited = time.monotonic() - started
                log(f"drained in {waited:.1f} s")
                return round(waited, 1)
            if time.monotonic() > deadline:
                log(
                    f"after {limit_s} s: {left} intents still processing, "
                    f"{hooks} in-window webhook deliveries pending"
                )
                return round(time.monotonic() - started, 1)
            time.sleep(0.5)

    # -- figures -------------------------------------------------------------

    def webhook_figures(self, receipts: list) -> dict:
        """Deliveries of the events created in the window, as the sink saw them."""
        from sqlalchemy import text

        ws, we = self.window
        with self.engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT e.id, extract(epoch FROM e.created_at) AS created,"
                    " d.status, a.outcome AS first_outcome"
                    " FROM events e"
                    " LEFT JOIN webhook_deliveries d ON d.event_id = e.id"
                    " LEFT JOIN webhook_attempts a ON a.delivery_id = d.id AND a.attempt = 1"
                    " WHERE e.created_at >= to_timestamp(:ws) AND e.created_at < to_timestamp(:we)"
                ),
                {"ws": ws, "we": we},
            ).all()
        created = {r.id: float(r.created) for r in rows}
        first: dict[str, float] = {}
        receipts_n = bad = 0
        for event_id, at, ok in receipts:
            if event_id not in created:
                continue
            receipts_n += 1
            if not ok:
                bad += 1
            if event_id not in first or at < first[event_id]:
                first[event_id] = at
        latency = [(first[e] - created[e]) * 1000 for e in first]
        dur = self.opts["duration_s"]
        in_window = sum(1 for at in first.values() if ws <= at < we)
        return {
            "webhook_first_attempt_latency_ms": percentiles(latency),
            "webhooks": {
                "events": len(created),
                "delivered": len(first),
                "bad_signatures": bad,
                "deliveries_succeeded_first_attempt": sum(
                    1 for r in rows if r.first_outcome == "succeeded"
                ),
                "undelivered_after_drain": sum(
                    1 for r in rows if r.status is not None and r.status != "succeeded"
                ),
                "without_delivery_row": sum(1 for r in rows if r.status is None),
                "duplicate_receipts": receipts_n - len(first),
                "events_per_s": round(len(created) / dur, 2),
                "delivered_in_window_per_s": round(in_window / dur, 2),
                "pending_at_window_end": self.hooks_pending_at_window_end,
            },
        }

    def figures(self, gen: dict, drain_s: float, last: bool = True) -> dict:
        """The window's figures; ``last``: the run's last window (the sink is read then)."""
        from sqlalchemy import text

        o = self.opts
        ws, we = self.window
        dur = o["duration_s"]
        p = {"ws": ws, "we": we}
        win = "created_at >= to_timestamp(:ws) AND created_at < to_timestamp(:we)"
        pct = (
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY {x}) AS p50,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY {x}) AS p95,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY {x}) AS p99"
        )
        e2e_ms = "extract(epoch FROM finalized_at - created_at) * 1000"
        settle_ms = "extract(epoch FROM settled_at - created_at) * 1000"

        def trio(row) -> dict | None:
            if row.p50 is None:
                return None
            return {k: round(float(getattr(row, k)), 2) for k in ("p50", "p95", "p99")}

        with self.engine.connect() as c:
            completed = c.execute(
                text(
                    "SELECT count(*) FROM payment_intents WHERE finalized_at >= to_timestamp(:ws)"
                    " AND finalized_at < to_timestamp(:we)"
                ),
                p,
            ).scalar()
            created = c.execute(text(f"SELECT count(*) FROM payment_intents WHERE {win}"), p)
            created = created.scalar()
            backlog = c.execute(
                text(
                    "SELECT count(*) FROM payment_intents WHERE created_at < to_timestamp(:we)"
                    " AND (finalized_at IS NULL OR finalized_at >= to_timestamp(:we))"
                ),
                p,
            ).scalar()
            e2e, first_attempt, unfinished = {}, {}, {}
            for prio in PRIORITIES:
                row = c.execute(
                    text(
                        f"SELECT {pct.format(x=e2e_ms)}, count(*) FILTER (WHERE TRUE) AS n"
                        f" FROM payment_intents WHERE {win} AND priority = :prio"
                        " AND finalized_at IS NOT NULL"
                    ),
                    {**p, "prio": prio},
                ).one()
                e2e[prio] = trio(row)
                # Without the intents the acquirer failed transiently: their e2e is the
                # retry schedule's (AUTH_RETRY_BASE_S), and the mix's processing_error
                # card alone is 1 % of requests, so it would be the p99 by itself.
                row = c.execute(
                    text(
                        f"SELECT {pct.format(x=e2e_ms)} FROM payment_intents WHERE {win}"
                        " AND priority = :prio AND finalized_at IS NOT NULL AND auth_attempts <= 1"
                    ),
                    {**p, "prio": prio},
                ).one()
                first_attempt[prio] = trio(row)
                unfinished[prio] = c.execute(
                    text(
                        f"SELECT count(*) FROM payment_intents WHERE {win} AND priority = :prio"
                        " AND finalized_at IS NULL"
                    ),
                    {**p, "prio": prio},
                ).scalar()
            settle = c.execute(
                text(
                    f"SELECT {pct.format(x=settle_ms)} FROM payment_intents WHERE {win}"
                    " AND priority = 'instant' AND settled_at IS NOT NULL"
                ),
                p,
            ).one()
            instant_unsettled = c.execute(
                text(
                    f"SELECT count(*) FROM payment_intents WHERE {win} AND priority = 'instant'"
                    " AND status = 'succeeded' AND settled_at IS NULL"
                ),
                p,
            ).scalar()
            statuses = dict(
                c.execute(
                    text(
                        f"SELECT status, count(*) FROM payment_intents WHERE {win}"
                        " GROUP BY status ORDER BY 2 DESC"
                    ),
                    p,
                ).all()
            )
            failures = dict(
                c.execute(
                    text(
                        f"SELECT failure_code, count(*) FROM payment_intents WHERE {win}"
                        " AND failure_code IS NOT NULL GROUP BY failure_code ORDER BY 2 DESC"
                    ),
                    p,
                ).all()
            )

        lat = gen["latencies_ms"]
        counts = gen["counts"]
        errors = {k: v for k, v in gen["errors"].items() if not k.startswith("warmup:")}
        warmup_errors = {k[7:]: v for k, v in gen["errors"].items() if k.startswith("warmup:")}
        total_gen_time = o["warmup_s"] + dur
        logs = {name: _log_problems(proc.output()) for name, proc in self.procs.items()}
        hooks = self.webhook_figures(self._collect_sink()) if o["webhooks"] and last else {}
        return {
            "accepted_per_s": round(counts.get("accepted_in_window", 0) / dur, 2),
            "completed_per_s": round(completed / dur, 2),
            "shed_per_s": round(counts.get("shed", 0) / dur, 2),
            # Every shed answer of the phase (warm-up too): how many carried Retry-After
            # and a problem+json body.
            "shed_answers": {k: v for k, v in sorted(counts.items()) if k.startswith("shed_")},
            "accept_latency_ms": percentiles(lat),
            "e2e_latency_ms": e2e,
            "e2e_first_attempt_latency_ms": first_attempt,
            "instant_settle_latency_ms": trio(settle),
            **hooks,
            "errors": {"count": sum(errors.values()), "by_kind": errors},
            "offered_rate": self.offered_rate,
            "sent_per_s": round(counts.get("sent", 0) / dur, 2),
            "unsent": counts.get("unsent", 0),
            "duration_s": dur,
            "warmup_s": o["warmup_s"],
            "created_in_window": created,
            "backlog_at_window_end": backlog,
            "processing_by_stage_at_window_end": self.stages_at_window_end,
            "unfinished_after_drain": unfinished,
            "instant_succeeded_unsettled": instant_unsettled,
            "drain_s": drain_s,
            "status_counts": statuses,
            "failure_codes": failures,
            "send_lag_ms": percentiles(gen["send_lag_ms"]),
            "warmup_errors": warmup_errors,
            "token_fetches": gen["token_fetches"],
            "loadgen_cpu_cores": round(gen["cpu_s"] / total_gen_time, 3),
            "cpu": self.cpu,
            "db_commits_per_s": self.db_xacts_per_s,
            "db_commits_per_completed": (
                round(self.db_xacts_per_s / (completed / dur), 2) if completed else None
            ),
            "redis_cmds_per_s (whole server)": self.redis_cmds_per_s,
            "process_log_problems": {k: v for k, v in logs.items() if any(v.values())},
            "database": self.db_name,
        }

    # -- teardown ------------------------------------------------------------

    def stop(self, failed: bool) -> None:
        # Reverse start order: load first, then the API, beat, and the workers.
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            try:
                _stop(proc)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                log(f"stopping {name}: {exc}")
            if failed:
                log(f"--- {name} log tail ({proc.log.name}) ---")
                print(proc.output()[-2000:], flush=True)
            if not failed and not self.opts["keep_logs"]:
                with contextlib.suppress(OSError):
                    os.unlink(proc.log.name)
            elif not failed:
                log(f"{name} log: {proc.log.name}")
        if self.engine is not None:
            self.engine.dispose()
        with contextlib.suppress(Exception):
            import redis

            r = redis.Redis.from_url(self.env["REDIS_URL"])
            r.flushdb()
            r.close()
        if self.db_created and not self.opts["keep_db"]:
            from shared.db.engine import dispose_engines
            from shared.db.migrate import drop_database

            dispose_engines()
            try:
                drop_database(self.env["MIGRATION_DATABASE_URL"])
                log(f"dropped {self.db_name}")
            except Exception as exc:  # noqa: BLE001
                log(f"could not drop {self.db_name}: {exc}")
        elif self.db_created:
            log(f"kept database {self.db_name} (BENCH_KEEP_DB=1)")
        shutil.rmtree(self.key_dir, ignore_errors=True)
        if getattr(self, "sink_dir", None):
            shutil.rmtree(self.sink_dir, ignore_errors=True)
        if getattr(self, "beat_dir", None):
            shutil.rmtree(self.beat_dir, ignore_errors=True)

    def execute(self) -> dict:
        failed = True
        try:
            self.setup()
            self.start_stack()
            self.smoke()
            from tests.load import modes

            if self.opts["backlog_economy"]:
                fig = modes.backlog(self)
            elif self.opts["overload"]:
                fig = modes.overload(self)
            else:
                gen = self.drive()
                drain_s = self.drain()
                fig = self.figures(gen, drain_s)
            if self.template:
                fig["preloaded"] = self.opts["preload"]
            if getattr(self, "daily_report", None):
                fig["preload_daily_report"] = self.daily_report
            if self.opts["reference"]:
                fig["reference"] = self.reference()
            failed = False
            return fig
        finally:
            self.stop(failed)


# --------------------------------------------------------------------------
# Several runs -> medians; output.
# --------------------------------------------------------------------------


def _median_tree(values: list):
    """Median of numbers; dicts recurse key by key (keys present in every run)."""
    if all(isinstance(v, dict) for v in values):
        keys = [k for k in values[0] if all(k in v for v in values)]
        return {k: _median_tree([v[k] for v in values]) for k in keys}
    nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(nums) == len(values) and nums:
        m = statistics.median(nums)
        return round(m, 2) if isinstance(m, float) else m
    return values[0] if all(v == values[0] for v in values) else None


MEDIAN_KEYS = (
    "accepted_per_s",
    "completed_per_s",
    "shed_per_s",
    "accept_latency_ms",
    "e2e_latency_ms",
    "instant_settle_latency_ms",
    "errors",
    "sent_per_s",
    "backlog_at_window_end",
    "loadgen_cpu_cores",
    "db_commits_per_completed",
    "webhook_first_attempt_latency_ms",
    "webhooks",
    "reference",
    "backlog",
    "half_load",
    "overload",
)


def summarize(runs: list[dict], opts: dict) -> dict:
    keys = [k for k in MEDIAN_KEYS if all(k in r for r in runs)]
    if len(runs) == 1:
        top = {k: runs[0][k] for k in keys}
    else:
        top = {k: _median_tree([r[k] for r in runs]) for k in keys}
        by_kind = Counter()
        for r in runs:
            by_kind.update(r["errors"]["by_kind"])
        top["errors"] = {
            "count": statistics.median(r["errors"]["count"] for r in runs),
            "by_kind_total": dict(by_kind),
        }
    if "reference" in top:
        # The names, at the top level: the reference measured in the same run(s).
        for key in ("bare_max_per_s", "intake_max_per_s", "intake_vs_bare", "accept_p99_vs_bare"):
            top[key] = top["reference"].get(key)
    p99 = (top["accept_latency_ms"] or {}).get("p99")
    top["target"] = {
        "completed_per_s_min": TARGET_COMPLETED_PER_S,
        "accept_p99_ms_max": TARGET_ACCEPT_P99_MS,
        "met": bool(
            top["completed_per_s"] >= TARGET_COMPLETED_PER_S
            and p99 is not None
            and p99 <= TARGET_ACCEPT_P99_MS
        ),
    }
    from shared.config import Settings

    d = Settings.from_env()
    top.update(
        {
            "aggregate": "single run" if len(runs) == 1 else f"median of {len(runs)} runs",
            "offered_rate": opts["rate"],
            "duration_s": opts["duration_s"],
            "warmup_s": opts["warmup_s"],
            "cpu_count": os.cpu_count(),
            "settings": {
                "web_concurrency": opts["web_concurrency"],
                "acquirer_latency_ms": opts["acquirer_latency_ms"],
                "webhooks": opts["webhooks"],
                "broker": opts["broker"],
                "loadgen": f"threads+http.client, {opts['connections']} connections, open loop",
                "batch_max": d.batch_max,
                "batch_interval_ms": d.batch_interval_ms,
                "max_backlog": 0 if opts["backlog_economy"] else d.max_backlog,
                "mode": mode_name(opts),
                "auth_max_attempts": d.auth_max_attempts,
                "auth_retry_base_s": d.auth_retry_base_s,
                "workers (from deploy/Procfile)": {
                    k: f"-Q {v['queues']} --pool {v['pool']} -c {v['concurrency']}"
                    for k, v in procfile_workers().items()
                },
            },
            "runs": runs,
        }
    )
    return top


def mode_name(opts: dict) -> str:
    """What the run measured, for the JSON's settings."""
    parts = []
    if opts["backlog_economy"]:
        parts.append(f"backlog_economy={opts['backlog_economy']}")
    elif opts["overload"]:
        parts.append("overload")
    if opts["preload"]:
        parts.append(f"preload={opts['preload']}")
    return ", ".join(parts) or "steady"


def _amqp(url: str) -> bool:
    from shared.config import AMQP_SCHEMES

    return url.split("://", 1)[0].lower() in AMQP_SCHEMES


def options() -> dict:
    rate = _env_float("BENCH_RATE", 110)
    return {
        "rate": rate,
        "duration_s": _env_float("BENCH_DURATION_S", 60),
        "warmup_s": _env_float("BENCH_WARMUP_S", 5),
        "runs": max(1, _env_int("BENCH_RUNS", 1)),
        "drain_s": _env_float("BENCH_DRAIN_S", 60),
        "connections": _env_int("BENCH_CONNECTIONS", _connections_for(rate)),
        "reference": os.environ.get("BENCH_REFERENCE", "0").strip() == "1",
        "reference_s": _env_float("BENCH_REFERENCE_S", 10),
        "reference_rounds": max(1, _env_int("BENCH_REFERENCE_ROUNDS", 2)),
        "reference_rate": _env_float("BENCH_REFERENCE_RATE", 0) or None,
        # Closed loop: as many connections as the servers have threads, twice over,
        # so that every gthread thread has a request waiting (wrk's -c 6 saw one
        # worker idle while another queued).
        "reference_connections": _env_int(
            "BENCH_REFERENCE_CONNECTIONS",
            2 * _env_int("WEB_CONCURRENCY", 3) * _env_int("THREADS", 2),
        ),
        "web_concurrency": _env_int("WEB_CONCURRENCY", 3),
        "acquirer_latency_ms": _env_int("ACQUIRER_LATENCY_MS", 0),
        "webhooks": os.environ.get("BENCH_WEBHOOKS", "0").strip() == "1",
        "redis_db": _env_int("BENCH_REDIS_DB", REDIS_DB),
        "broker": "rabbitmq" if _amqp(os.environ.get("BROKER_URL", "")) else "redis",
        # Issue 12's long modes (tests/load/modes.py, tests/load/preload.py).
        "backlog_economy": max(0, _env_int("BENCH_BACKLOG_ECONOMY", 0)),
        "overload": os.environ.get("BENCH_OVERLOAD", "0").strip() == "1",
        "overload_probe_rate": _env_float("BENCH_OVERLOAD_PROBE_RATE", 400),
        "rate_given": bool(os.environ.get("BENCH_RATE", "").strip()),
        "preload": max(0, _env_int("BENCH_PRELOAD", 0)),
        "preload_day_intents": max(1, _env_int("BENCH_PRELOAD_DAY_INTENTS", 1_000_000)),
        "keep_db": os.environ.get("BENCH_KEEP_DB", "") == "1",
        # tests/load/profiling.py: py-spy on every process of the stack during the window.
        "profile": os.environ.get("BENCH_PROFILE", "0").strip() == "1",
        "profile_dir": Path(os.environ.get("BENCH_PROFILE_DIR", "") or ROOT / "bench-profiles"),
        "keep_logs": os.environ.get("BENCH_KEEP_LOGS", "") == "1",
        "wait_for_api": os.environ.get("BENCH_WAIT_FOR_API", "1") == "1",
    }


def _connections_for(rate: float) -> int:
    # Enough threads that a few slow requests do not stall the schedule.
    return min(128, max(8, math.ceil(rate / 5)))


def _preload_template(opts: dict) -> dict:
    """The template database of BENCH_PRELOAD intents (built the first time)."""
    from shared.config import with_user
    from tests.load import preload

    base_db = os.environ.get(
        "DATABASE_URL", "postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/clearhouse"
    )
    admin = os.environ.get("MIGRATION_DATABASE_URL") or with_user(base_db)
    return preload.ensure_template(
        admin, base_db, opts["preload"], opts["preload_day_intents"], log
    )


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--generate":
        work = Path(sys.argv[2])
        result = generate(json.loads((work / "cfg.json").read_text()))
        (work / "result.json").write_text(json.dumps(result))
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    opts = options()
    log(
        f"{opts['runs']} run(s) at {opts['rate']}/s for {opts['duration_s']} s "
        f"(+{opts['warmup_s']} s warm-up), {os.cpu_count()} CPUs"
    )
    runs, empty, preload = [], [], None
    try:
        if opts["preload"]:
            preload = _preload_template(opts)
        for i in range(opts["runs"]):
            if preload:
                # The same load on an empty database first: the flat-cost ratio's base.
                empty.append(Run(i, opts).execute())
            template = preload["template"] if preload else None
            fig = Run(i, opts, template, report=bool(preload) and i == 0).execute()
            runs.append(fig)
            log(
                f"run {i + 1}: accepted {fig['accepted_per_s']}/s, completed "
                f"{fig['completed_per_s']}/s, accept p99 "
                f"{(fig['accept_latency_ms'] or {}).get('p99')} ms, errors {fig['errors']['count']}"
            )
            if "reference" in fig:
                ref = fig["reference"]
                log(
                    f"run {i + 1} reference: bare max {ref['bare_max_per_s']}/s, intake max "
                    f"{ref['intake_max_per_s']}/s (intake_vs_bare {ref['intake_vs_bare']}); at "
                    f"{ref['half_load_rate_per_s']}/s accept p99 intake "
                    f"{(ref['intake_accept_latency_ms'] or {}).get('p99')} ms, bare "
                    f"{(ref['bare_accept_latency_ms'] or {}).get('p99')} ms "
                    f"(accept_p99_vs_bare {ref['accept_p99_vs_bare']})"
                )
    except KeyboardInterrupt:
        log("interrupted; children stopped")
        return 130
    summary = summarize(runs, opts)
    if preload:
        from tests.load.preload import flat_cost

        summary["preload"] = {
            "intents": opts["preload"],
            **preload,
            **flat_cost(empty, runs),
            "daily_report": runs[0].get("preload_daily_report"),
        }
        summary["empty_database_runs"] = empty
    RESULTS_FILE.write_text(json.dumps(summary, indent=2) + "\n")
    log(f"wrote {RESULTS_FILE.name}")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
