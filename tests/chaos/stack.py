"""The system under test: private Postgres and Redis, every Procfile process supervised.

Each process runs its Procfile command under a restart loop, as compose's
``restart:`` or systemd's ``Restart=always`` would: when it exits it is
started again a second later, and every start after the first is counted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from shared.db import roles
from tests.support.services import PrivatePostgres, PrivateRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
# Flower only watches; it is not on any payment's path and binds a fixed port.
# The sandbox banks bind fixed ports and carry none of the chaos load (no bank payments).
SKIPPED = {"flower", "bank_a", "bank_b"}
RESTART_DELAY_S = 1.0


def procfile() -> dict[str, str]:
    """Process name -> shell command, as deploy/Procfile has them."""
    out = {}
    for line in (ROOT / "deploy/Procfile").read_text().splitlines():
        m = re.match(r"^([a-z_]+):\s*(.+)$", line)
        if m and m.group(1) not in SKIPPED:
            bindir = str(Path(sys.executable).parent) + "/"
            out[m.group(1)] = m.group(2).replace(".venv/bin/", bindir)
    return out


class Supervised:
    """One Procfile process and its restart loop."""

    def __init__(self, name: str, command: str, env: dict, logdir: Path):
        self.name, self.command, self.env = name, command, env
        self.log = open(logdir / f"{name}.log", "ab")  # noqa: SIM115 (open for the run)
        self.kills = 0
        self.restarts = 0
        self.proc: subprocess.Popen | None = None
        self._stopping = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._supervise, name=f"sup-{self.name}", daemon=True).start()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", self.command],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _supervise(self) -> None:
        while True:
            proc = self.proc
            proc.wait()
            with self._lock:
                if self._stopping:
                    return
                time.sleep(RESTART_DELAY_S)
                self.restarts += 1
                self.log.write(f"--- supervisor: restart {self.restarts}\n".encode())
                self.log.flush()
                self._spawn()

    def kill(self) -> None:
        """SIGKILL the main process only (a gunicorn master's workers are orphaned)."""
        with self._lock:
            self.kills += 1
            if self.proc and self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


class Stack:
    def __init__(self, rundir: Path, env_overrides: dict):
        self.rundir = rundir
        self.pg = PrivatePostgres(str(rundir / "pg"))
        self.redis = PrivateRedis(logfile=str(rundir / "redis.log"))
        self.api_port = free_port()
        self.procs: dict[str, Supervised] = {}
        self.env = {
            **os.environ,
            # The services as deployed: the app role; db upgrade as the superuser.
            "DATABASE_URL": self.pg.url(user=roles.APP),
            "MIGRATION_DATABASE_URL": self.pg.url(),
            "REDIS_URL": self.redis.url,
            "REDIS_KEY_PREFIX": "chaos:",
            "CLEARHOUSE_KEY_DIR": str(rundir / "keys"),
            "PORT": str(self.api_port),
            "WORKER_METRICS_PORT": str(_three_free_ports()),
            "METRICS_PORT": str(free_port()),
            "RELAY_METRICS_PORT": str(free_port()),
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_SCHEDULE_SCALE": "0.01",
            "WEBHOOK_TIMEOUT_S": "5",
            "REDRIVE_AFTER_S": "10",
            "REDRIVE_INTERVAL_S": "5",
            "BEAT_LOCK_TIMEOUT_S": "10",
            "SETTLEMENT_STANDARD_INTERVAL_S": "30",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # This checkout's code, whichever one the venv was installed from.
            "PYTHONPATH": str(ROOT),
            # Lets stop() find every process of this run, orphans included.
            "CHAOS_TAG": f"chaos-{rundir.name}",
            **env_overrides,
        }

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_services(self) -> None:
        self.pg.init()
        self.pg.start()
        self.redis.start()
        from shared.db.migrate import upgrade

        upgrade(self.env["MIGRATION_DATABASE_URL"])

    def start_processes(self) -> None:
        for name, command in procfile().items():
            env = {
                **self.env,
                "METRICS_DIR": str(self.rundir / "metrics" / name),
                "HEARTBEAT_FILE": str(self.rundir / f"{name}.alive"),
            }
            self.procs[name] = p = Supervised(name, command, env, self.rundir)
            p.start()
        self.wait_api()

    def wait_api(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.api + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("the API did not come up; see api.log")

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()
        # Orphans of a killed gunicorn master, if any are left.
        kill_tagged(self.env["CHAOS_TAG"])
        self.redis.stop()
        from shared.db.engine import dispose_engines

        dispose_engines()
        self.pg.destroy()


def kill_tagged(tag: str) -> None:
    """SIGKILL every process whose environment carries CHAOS_TAG=tag."""
    needle = f"CHAOS_TAG={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _three_free_ports() -> int:
    """A base port with base+1 and base+2 free too (the workers' metrics ports)."""
    import socket

    for _ in range(50):
        base = free_port()
        try:
            for off in (1, 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + off))
            return base
        except OSError:
            continue
    raise RuntimeError("no three consecutive free ports")
