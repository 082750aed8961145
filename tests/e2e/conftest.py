"""The whole stack as a user runs it: gunicorn, Celery workers, the CLI; HTTP only."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, python_bin
from tests.factories import access_token
from tests.support import processes


@pytest.fixture(scope="session")
def stack(database, redis_client):
    """API on a free port plus a worker for every queue; yields the base URL."""
    port = free_port()
    with (
        processes.celery_worker("e2e") as worker,
        processes.relay() as relay,
        processes.gunicorn(port, workers=2) as api,
    ):
        yield {"url": f"http://127.0.0.1:{port}", "logs": [worker, relay, api]}


def create_merchant(name: str = "e2e merchant") -> dict:
    """Create a merchant with the real CLI, as an operator would."""
    out = subprocess.run(
        [python_bin("clearhouse"), "merchant", "create", "--name", name, "--json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class Client:
    """A merchant's HTTP client: gets its token, then talks JSON."""

    def __init__(self, base: str, merchant: dict):
        self.base = base
        self.merchant = merchant
        self.session = requests.Session()
        self.token = access_token(base, merchant, self.session)
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def post(self, path: str, body=None, **kw):
        return self.session.post(self.base + path, json=body, timeout=10, **kw)

    def get(self, path: str, **kw):
        return self.session.get(self.base + path, timeout=10, **kw)

    def wait(
        self,
        intent_id: str,
        final=("succeeded", "failed", "canceled", "requires_capture"),
        timeout: float = 30,
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(f"/v1/payment_intents/{intent_id}").json()
            if body["status"] in final:
                return body
            assert time.monotonic() < deadline, f"{intent_id} stuck: {body}"
            time.sleep(0.1)


@pytest.fixture
def client(stack):
    return Client(stack["url"], create_merchant())


@pytest.fixture
def other_client(stack):
    return Client(stack["url"], create_merchant("another merchant"))
