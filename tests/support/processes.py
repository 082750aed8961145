"""Real processes for integration and e2e tests: Celery workers, gunicorn."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from workers.topology import INSTANT_QUEUES, QUEUES

ROOT = Path(__file__).resolve().parents[2]
ALL_QUEUES = ",".join(QUEUES)
# Every queue a payment passes through up to instant settlement, both lanes.
PAYMENT_QUEUES = ",".join(("limits", "fraud", "fees", "authorize", *INSTANT_QUEUES))


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


# Celery workers running now: tests that sum metrics scrape them all, since
# any live worker of the session may have run a task.
WORKERS: list[Process] = []


class Process:
    """A child process with its output in a temp file, stopped on exit."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None):
        self.name = name
        # Kept open for the child's lifetime; closed in stop().
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"{name}-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)  # polling interval
        raise RuntimeError(f"{self.name} did not print {text!r}:\n{self.output()[-3000:]}")

    def wait_for_count(self, text: str, count: int, timeout: float = 30) -> None:
        """Wait until ``text`` appears at least ``count`` times in the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.output().count(text) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)  # polling interval
        raise RuntimeError(f"{self.name} did not print {text!r} x{count}:\n{self.output()[-3000:]}")

    def kill(self, sig=signal.SIGKILL) -> None:
        """Kill the whole process group (a prefork worker's children too)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        if self in WORKERS:
            WORKERS.remove(self)
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _observable(env: dict | None, **defaults: str) -> dict:
    """Env with INFO logs (tests wait for log lines) and a metrics folder of its own."""
    return {
        "LOG_LEVEL": "INFO",
        "METRICS_DIR": tempfile.mkdtemp(prefix="clearhouse-metrics-"),
        **defaults,
        **(env or {}),
    }


def celery_worker(
    name: str = "test",
    queues: str = ALL_QUEUES,
    pool: str = "prefork",
    concurrency: int = 2,
    env: dict | None = None,
    nice: int = 0,
    track: bool = True,
) -> Process:
    """Start a real Celery worker (at ``nice``, as deploy/Procfile may) and wait until ready.

    ``track``: count it in WORKERS, the workers that may run tasks this pytest
    process sends (False for a worker on another layer's queues: the e2e stack).
    """
    env = _observable(env, WORKER_METRICS_PORT=str(_free_port()))
    argv = [
        *(["nice", "-n", str(nice)] if nice else []),
        _bin("celery"),
        "-A",
        "workers.celery_app",
        "--quiet",  # no banner: every line of output is a JSON log line
        "worker",
        "-Q",
        queues,
        "-n",
        f"{name}-{os.getpid()}@%h",
        "--pool",
        pool,
        "-c",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    p = Process(f"worker-{name}", argv, env)
    p.metrics_port = int(env["WORKER_METRICS_PORT"])
    if track:
        WORKERS.append(p)
    try:
        p.wait_for("ready.", timeout=60)
    except RuntimeError:
        p.stop()
        raise
    return p


def procfile_workers(path: Path = ROOT / "deploy/Procfile") -> list[tuple[str, str, str]]:
    """The Celery workers deploy/Procfile runs: (process name, its -Q queues, its --pool)."""
    found = []
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        argv = shlex.split(command) if sep and not line.startswith("#") else []
        if not any(a.endswith("/celery") for a in argv) or "worker" not in argv:
            continue  # not a Celery worker (the API, the relay, beat, Flower)
        opt = {k: v for k, v in zip(argv, argv[1:], strict=False) if k in ("-Q", "--pool")}
        found.append((name.strip(), opt["-Q"], opt.get("--pool", "prefork")))
    return found


def relay(env: dict | None = None, nice: int = 0) -> Process:
    """Start the outbox relay (new intents → the first queue), its metrics on a free port."""
    prefix = ["nice", "-n", str(nice)] if nice else []
    env = {"LOG_LEVEL": "INFO", "RELAY_METRICS_PORT": str(_free_port()), **(env or {})}
    p = Process("relay", [*prefix, sys.executable, "-m", "workers.relay"], env)
    p.metrics_port = int(env["RELAY_METRICS_PORT"])
    p.wait_for("relay: listening", timeout=30)
    return p


def celery_beat(env: dict | None = None, wait_for_lock: bool = True) -> Process:
    """Start beat (RedBeat keeps its schedule in Redis); wait until it holds the lock."""
    argv = [_bin("celery"), "-A", "workers.celery_app", "--quiet", "beat", "--loglevel", "INFO"]
    p = Process("beat", argv, _observable(env))
    p.wait_for("beat: Acquired lock" if wait_for_lock else "beat: Starting", timeout=60)
    return p


def gunicorn(
    port: int,
    workers: int = 2,
    env: dict | None = None,
    tls: dict | None = None,
    app: str = "intake.app:get_app()",
    health: str = "/health",
) -> Process:
    """Start the API under gunicorn and wait for /health; its metrics on a free operator port.

    ``p.metrics_url``: the operator port's /metrics (METRICS_PORT; 0 in ``env``: none).
    ``tls``: the server's env has TLS_* set; these are requests' ``verify`` (the CA) and
    ``cert`` for the /health probe over HTTPS. ``p.url``: the API's base URL.
    ``app`` and ``health``: another app under the same settings (the bench's bare reference).
    """
    argv = [
        _bin("gunicorn"),
        "-c",
        "deploy/gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        app,
    ]
    env = _observable(env, METRICS_PORT=str(_free_port()))
    p = Process("gunicorn", argv, env)
    p.metrics_dir = env["METRICS_DIR"]
    p.metrics_port = int(env["METRICS_PORT"])
    p.metrics_url = f"http://127.0.0.1:{p.metrics_port}/metrics"
    p.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(p.url + health, timeout=1, **(tls or {})).status_code == 200:
                return p
        except requests.RequestException:
            pass
        if p.proc.poll() is not None:
            break
        time.sleep(0.2)  # polling interval
    p.stop()
    raise RuntimeError(f"gunicorn did not come up:\n{p.output()[-3000:]}")


def redis_server(port: int) -> Process:
    """A private, empty Redis on ``port`` (no persistence: a restart loses every key)."""
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    p = Process(f"redis-{port}", [*argv, "--appendonly", "no"])
    p.wait_for("Ready to accept connections", timeout=15)
    return p
