"""Sandbox bank processes for tests: real ``clearhouse-bank`` servers on free ports.

Each bank keeps its SQLite file in a folder of the test's, so a bank stopped and
started again (``restart``) has the same books, as a real bank's restart would.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from bank.store import Store
from shared.connectors.bank import Banks
from tests.conftest import free_port
from tests.support.processes import Process


class BankPair:
    """bank_a (the payers') and bank_b (the merchants'), and a client of both."""

    def __init__(self, folder: Path, token: str | None = None):
        self.folder = folder
        self.token = token or secrets.token_hex(16)
        self.ports = {"bank_a": free_port(), "bank_b": free_port()}
        self.procs: dict[str, Process] = {}
        self.client = Banks(self.addresses, self.token, timeout_s=5)

    @property
    def addresses(self) -> dict[str, str]:
        return {name: f"127.0.0.1:{port}" for name, port in self.ports.items()}

    @property
    def env(self) -> dict[str, str]:
        """What a gateway process (a worker) needs to reach these banks."""
        spec = ",".join(f"{n}={a}" for n, a in self.addresses.items())
        return {"BANKS": spec, "BANK_TOKEN": self.token}

    def db(self, name: str) -> Path:
        return self.folder / f"{name}.sqlite3"

    def start(self, name: str, **env: str) -> Process:
        """Start bank ``name`` (env: BANK_LATENCY_MS, ...); wait until it listens."""
        argv = [sys.executable, "-m", "bank", "--name", name, "--port", str(self.ports[name])]
        p = Process(
            name,
            [*argv, "--db", str(self.db(name))],
            {"BANK_TOKEN": self.token, "LOG_LEVEL": "INFO", **env},
        )
        self.procs[name] = p
        p.wait_for(f"bank {name}: listening", timeout=30)
        return p

    def stop(self, name: str) -> None:
        self.procs.pop(name).stop()

    def restart(self, name: str, **env: str) -> Process:
        self.stop(name)
        return self.start(name, **env)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def open_account(self, name: str, owner: str, amount: int = 0) -> str:
        account = self.client.create_account(name, owner, "USD")["account"]
        if amount:
            self.client.fund(name, account, amount)
        return account

    def total(self) -> int:
        """Every balance at both banks, read from their files (a stopped bank counts too)."""
        return sum(Store(self.db(name)).total() for name in self.ports if self.db(name).exists())

    def state(self, name: str, tx_id: str) -> str | None:
        return Store(self.db(name)).status(tx_id).state

    def account(self, name: str, account: str) -> dict:
        return Store(self.db(name)).account(account)
