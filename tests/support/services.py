"""Private Postgres and Redis servers that a test can stop, kill and restart.

Each has its own port and data directory, so breaking it touches nothing
else on the machine (the session's shared servers keep running).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> str:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return str(Path(found).resolve().parent)
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    for d in reversed(dirs):
        if os.path.exists(f"{d}/pg_ctl") and os.path.exists(f"{d}/initdb"):
            return d
    raise RuntimeError("initdb/pg_ctl not found (apt-get install postgresql)")


class PrivatePostgres:
    """A throwaway cluster (initdb, trust auth) on its own port."""

    def __init__(self, root: str | None = None, port: int | None = None):
        self.port = port or free_port()
        self.root = Path(root or tempfile.mkdtemp(prefix="clearhouse-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self._bin = _pg_bindir()
        # initdb and postgres refuse to run as root: use the postgres account.
        self._user = "postgres" if os.geteuid() == 0 else None

    def url(self, db: str = "clearhouse", user: str = "postgres") -> str:
        """``user`` (default the superuser; trust auth, no password) on database ``db``."""
        return f"postgresql+psycopg2://{user}@127.0.0.1:{self.port}/{db}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [f"{self._bin}/{argv[0]}", *argv[1:]]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> PrivatePostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user:
            pw = pwd.getpwnam(self._user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        return self

    def start(self) -> None:
        # fsync off is safe against what the tests do (kill or stop -m immediate
        # the server, never the machine: the OS still holds the pages). Commits
        # stay synchronous: with synchronous_commit off, an immediate stop loses
        # transactions the client was told had committed.
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """An empty Redis without persistence: a restart loses every key."""

    def __init__(self, port: int | None = None, logfile: str | None = None):
        self.port = port or free_port()
        self.logfile = logfile or str(Path(tempfile.mkdtemp(prefix="clearhouse-redis-")) / "log")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            self.logfile,
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.05)  # polling interval
        raise RuntimeError(f"redis on {self.port} did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
