"""The whole stack as a user runs it: deploy/Procfile's processes; HTTP and the CLI only.

Isolation. The e2e layer has a database, a Redis key prefix and card keys of
its own (E2E_ENV), and every process it starts (the API, the workers, the
relay, beat, the CLI) gets them. The pytest process itself keeps the
integration layer's environment: tests/conftest.py sets it before any project
module reads its settings, and settings are then cached for the life of the
process (shared.config.get_settings, the Celery app built at import), so one
pytest process cannot switch project code between two databases. Hence e2e
tests never run project code in-process: they talk to the stack over HTTP and
through the CLI, and the in-process fixtures (``database``, ``engine``, ...)
fail here. Nothing of the integration layer (its worker, relay, beats, its
wipes of Redis) ever sees an e2e row or message, and the other way round.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from requests.adapters import HTTPAdapter

from shared.config import with_user
from shared.db import roles
from tests import factories as f
from tests.conftest import TEST_DB, TEST_ENV, _ensure_services, free_port
from tests.support import brokers, clirun, processes

ROOT = Path(__file__).resolve().parents[2]
E2E_DB = f"{TEST_DB}_e2e"
E2E_ENV = {
    # Every process of the stack, and the CLI, as the app role (whatever the
    # integration layer's DATABASE_URL names): the whole layer runs as deployed.
    "DATABASE_URL": with_user(TEST_ENV["DATABASE_URL"], roles.APP).rsplit("/", 1)[0] + "/" + E2E_DB,
    "MIGRATION_DATABASE_URL": TEST_ENV["MIGRATION_DATABASE_URL"].rsplit("/", 1)[0] + "/" + E2E_DB,
    # Not under TEST_ENV's prefix: the integration layer's wipe_redis (all keys
    # under its prefix) must not reach the e2e stack's queues and beat lock.
    # Kombu prefixes pub/sub too, so control broadcasts stay apart as well.
    "REDIS_KEY_PREFIX": f"{E2E_DB}:",
    "CLEARHOUSE_KEY_DIR": tempfile.mkdtemp(prefix="clearhouse-e2e-keys-"),
    # With BROKER_URL=amqp://…: a vhost of its own, for the same reason.
    **brokers.private_vhost(E2E_DB),
}
# Beat as deployed, with test-sized intervals: due webhook retries dispatched
# within 0.3 s, stuck intents re-driven within a second or two (REDRIVE_AFTER_S
# comes from TEST_ENV); settlement windows never during a session, so a
# standard or economy payment stays pending until a test settles it.
BEAT_ENV = {
    "WEBHOOK_DISPATCH_INTERVAL_S": "0.3",
    "REDRIVE_INTERVAL_S": "1",
    "SETTLEMENT_STANDARD_INTERVAL_S": "86400",
    "SETTLEMENT_ECONOMY_INTERVAL_S": "86400",
}

# The API as deployed, but for the OAuth endpoints' per-IP limit: schemathesis sends all
# its OAuth cases from 127.0.0.1, about 100/s, far past the default 20/s, and would see
# mostly 429s there. Every other limit (and the lockout) keeps its default; the limiter
# itself is tested in tests/integration/test_rate_limits.py.
API_ENV = {"RATE_LIMIT_TOKEN_PER_IP": "1000"}


@pytest.fixture(scope="session")
def e2e_database():
    """The e2e stack's database, migrated; yields the superuser's URL (tests' own reads)."""
    from shared.db.migrate import drop_database, upgrade

    _ensure_services()
    upgrade(E2E_ENV["MIGRATION_DATABASE_URL"])
    yield E2E_ENV["MIGRATION_DATABASE_URL"]
    drop_database(E2E_ENV["MIGRATION_DATABASE_URL"])


@pytest.fixture(scope="session")
def e2e_engine(e2e_database):
    """The e2e stack's database, for asserting what HTTP and the CLI did to it (and for
    what only a test does: ending backends); as a superuser, unlike the stack."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(e2e_database, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def stack(e2e_database):
    """deploy/Procfile's layout: the API, its solo workers, the relay and beat; yields URL."""
    client = redis.Redis.from_url(TEST_ENV["REDIS_URL"])
    port = free_port()
    starters = {
        # Procfile's worker_pipeline, worker_instant, ...: the same queues and pool.
        name: functools.partial(
            processes.celery_worker,
            f"e2e-{name}",
            queues,
            pool=pool,
            concurrency=1,
            env=E2E_ENV,
            track=False,
        )
        for name, queues, pool in processes.procfile_workers()
    }
    starters["relay"] = functools.partial(processes.relay, E2E_ENV)
    starters["beat"] = functools.partial(processes.celery_beat, {**E2E_ENV, **BEAT_ENV})
    starters["api"] = functools.partial(
        processes.gunicorn, port, workers=2, env={**E2E_ENV, **API_ENV}
    )
    procs: dict[str, processes.Process] = {}
    with contextlib.ExitStack() as running:
        running.callback(_wipe, client, E2E_ENV["REDIS_KEY_PREFIX"])
        running.callback(_stop_all, procs)
        # Started, and stopped, side by side: none waits for another.
        with ThreadPoolExecutor(len(starters)) as pool:
            futures = {name: pool.submit(start) for name, start in starters.items()}
        for name, future in futures.items():
            with contextlib.suppress(Exception):
                procs[name] = future.result()
        for future in futures.values():
            future.result()  # the first start-up that failed, if any, fails the fixture
        yield {
            "url": f"http://127.0.0.1:{port}",
            "workers": {n.removeprefix("worker_"): p for n, p in procs.items() if "worker" in n},
            "beat": procs["beat"],
            "logs": list(procs.values()),
        }


def _stop_all(procs: dict) -> None:
    with ThreadPoolExecutor(max(len(procs), 1)) as pool:
        list(pool.map(lambda p: p.stop(), procs.values()))


def _wipe(client, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI against the e2e stack's database, as an operator would."""
    return clirun.cli(*args, env={**E2E_ENV, **(env or {})})


def create_merchant(name: str = "e2e merchant", *extra: str) -> dict:
    """Create a merchant with the real CLI."""
    out = cli("merchant", "create", "--name", name, "--json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


class _FromAddress(HTTPAdapter):
    """Connections from one local source address."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


class Client:
    """A merchant's HTTP client: gets its token, then talks JSON.

    It connects from an address of its own (127.x.y.z): the API records it as
    the client IP, so fraud's IP velocity counts this client's intents only,
    not every test's (all of which would otherwise come from 127.0.0.1).
    """

    def __init__(self, base: str, merchant: dict):
        self.base = base
        self.merchant = merchant
        self.address = f.new_ip(loopback=True)
        self.session = requests.Session()
        self.session.mount("http://", _FromAddress(self.address))
        self.token = f.access_token(base, merchant, self.session)
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def post(self, path: str, body=None, **kw):
        return self.session.post(self.base + path, json=body, timeout=10, **kw)

    def get(self, path: str, **kw):
        # As a well-behaved client: a 429 is waited out (Retry-After), a few times.
        for _ in range(5):
            r = self.session.get(self.base + path, timeout=10, **kw)
            if r.status_code != 429:
                return r
            time.sleep(float(r.headers.get("Retry-After") or 1))  # the server's own wait
        return r

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
            time.sleep(0.1)  # polling interval


@pytest.fixture
def client(stack):
    return Client(stack["url"], create_merchant())


@pytest.fixture
def other_client(stack):
    return Client(stack["url"], create_merchant("another merchant"))


# The pytest process's project code and fixtures are the integration layer's
# (see the module docstring): an e2e test asking for them is a mistake.
def _not_in_e2e(name: str):
    @pytest.fixture(name=name, scope="session")
    def refuse():
        pytest.fail(
            f"e2e tests talk to the stack over HTTP and the CLI only; the {name!r} fixture"
            " is the integration layer's (another database and Redis prefix)",
            pytrace=False,
        )

    return refuse


database = _not_in_e2e("database")
engine = _not_in_e2e("engine")
redis_client = _not_in_e2e("redis_client")
settings = _not_in_e2e("settings")
vault = _not_in_e2e("vault")
uow = _not_in_e2e("uow")
make_merchant = _not_in_e2e("make_merchant")
