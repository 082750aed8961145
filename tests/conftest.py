"""Shared fixtures: a private Postgres database and Redis db per test process.

The environment is set here, before any project module reads its settings,
so the test process, the Celery workers and gunicorn it starts all agree.
It is the integration layer's (unit tests need none); the e2e layer gives
the processes it starts a database and key prefix of their own
(tests/e2e/conftest.py). Every test uses random ids and its own merchants,
cards and client IPs, so nothing needs cleaning between tests.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shared.config import with_user  # pure: reads no setting
from shared.connectors.chain import web3_modules
from tests.support import rabbitmq

ROOT = Path(__file__).resolve().parent.parent
# The services' role, as deployed (shared/db/roles.py); migrations and the
# test-only superuser actions (planted faults, killed backends) as the admin.
_base_db = os.environ.get(
    "DATABASE_URL", "postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/test"
)
_base_admin = os.environ.get("MIGRATION_DATABASE_URL") or with_user(_base_db)
_base_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Before any test module imports eth-account or web3 itself: py_ecc raises the
# recursion limit to 100,000 on its first import, and web3_modules() puts it back,
# so a deep-JSON test cannot crash its process.
web3_modules()

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_n = int(_worker[2:] or 0) if _worker.startswith("gw") else 0

# One database per test process (xdist worker), named so leftovers are obvious.
TEST_DB = f"clearhouse_test_{_n}_{secrets.token_hex(3)}"
TEST_ENV = {
    "DATABASE_URL": _base_db.rsplit("/", 1)[0] + "/" + TEST_DB,
    "MIGRATION_DATABASE_URL": _base_admin.rsplit("/", 1)[0] + "/" + TEST_DB,
    # Redis db 8 + worker number: queues of parallel test processes never mix.
    "REDIS_URL": _base_redis.rsplit("/", 1)[0] + f"/{8 + _n}",
    # Queues and beat keys under a per-session prefix: concurrent test runs on
    # one machine never consume each other's messages.
    "REDIS_KEY_PREFIX": f"{TEST_DB}:",
    "CLEARHOUSE_KEY_DIR": tempfile.mkdtemp(prefix="clearhouse-keys-"),
    "BATCH_INTERVAL_MS": "5",
    "AUTH_RETRY_BASE_S": "0.05",
    "AUTH_MAX_ATTEMPTS": "3",
    # Re-drive soon: the scheduler tests break Redis and wait for recovery.
    "REDRIVE_AFTER_S": "3",
    "LOG_LEVEL": "WARNING",
    # Webhook receivers in tests listen on 127.0.0.1; 3 days of retries in ~4 min.
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_SCHEDULE_SCALE": "0.001",
}
# BROKER_URL=amqp://… runs the layer on RabbitMQ, in a vhost of the session's
# own (the vhost is what REDIS_KEY_PREFIX is to the Redis broker); unset or
# empty, Redis is the broker as deployed by default.
_base_broker = os.environ.get("BROKER_URL", "")
if rabbitmq.is_amqp(_base_broker):
    TEST_ENV["BROKER_URL"] = rabbitmq.vhost_url(_base_broker, TEST_DB)
os.environ.update(TEST_ENV)
BROKER_IS_AMQP = rabbitmq.is_amqp(os.environ.get("BROKER_URL", ""))


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+psycopg2", ""))
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def _ensure_services() -> None:
    if _reachable(TEST_ENV["DATABASE_URL"], 5432) and _reachable(TEST_ENV["REDIS_URL"], 6379):
        return
    # A fresh machine: start (installing if needed) local Postgres and Redis.
    subprocess.run(["bash", str(ROOT / "deploy/dev/services.sh")], check=True, cwd=ROOT)


@pytest.fixture(scope="session")
def settings():
    from shared.config import get_settings

    return get_settings()


@pytest.fixture(scope="session", autouse=True)
def _dev_keys():
    """Every development key file exists before any test starts a process.

    Otherwise the first process of the session to need one generates it and
    says so on stderr, and a CLI test asserting an empty stderr fails when
    the random order runs it first (CI: test_operators, seed 2446389939).
    """
    from datetime import UTC, datetime

    from shared.config import get_settings
    from shared.services import keys

    # The session's settings, not the ``settings`` fixture: modules override that one.
    keys.init(get_settings(), datetime.now(UTC))


@pytest.fixture(scope="session")
def database():
    # Not from the ``settings`` fixture: a module may override that one (and
    # ``engine``) for itself, and this session fixture must not pick it up.
    from shared.config import get_settings
    from shared.db.migrate import drop_database, upgrade

    settings = get_settings()
    _ensure_services()
    upgrade(settings.migration_url)
    yield settings.database_url
    from shared.db.engine import dispose_engines

    dispose_engines()
    drop_database(settings.migration_url)


@pytest.fixture(scope="session")
def engine(database):
    from shared.config import get_settings
    from shared.db.engine import get_engine

    return get_engine(database, "worker", get_settings().db_timeouts_worker)


@pytest.fixture(scope="session")
def admin_engine(database):
    """A superuser's connection to the test database: for what tests do and services
    may not (plant a ledger fault, end a backend), never for the code under test."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(TEST_ENV["MIGRATION_DATABASE_URL"], poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_client(settings, database):
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    wipe_redis(client)
    yield client
    wipe_redis(client)


@pytest.fixture
def uow(engine):
    from shared.db.uow import UnitOfWork

    return lambda: UnitOfWork(engine)


@pytest.fixture(scope="session")
def vault(settings):
    from shared.security.vault import Vault

    return Vault.from_settings(settings)


@pytest.fixture
def make_merchant(engine, vault, settings):
    """Factory: a fresh merchant (with credentials) per call."""
    from shared.db.uow import UnitOfWork
    from shared.services import merchants

    def make(name: str = "Test merchant", webhook_url: str | None = None) -> dict:
        with UnitOfWork(engine) as u:
            m = merchants.create_merchant(
                u, vault, name, webhook_url, settings.webhook_allow_private
            )
            u.commit()
        make.made.append(m["merchant_id"])
        return m

    make.made = []  # this test's merchants: what books_balance checks
    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_bin(name: str) -> str:
    """An executable installed beside this interpreter (celery, gunicorn)."""
    return str(Path(sys.executable).parent / name)


def wipe_redis(client) -> int:
    """Delete every key of this test session (all our keys carry its prefix).

    To the system under test this is the same as Redis restarting empty, and
    other sessions sharing the server are left alone.
    """
    keys = list(client.scan_iter(match=TEST_ENV["REDIS_KEY_PREFIX"] + "*", count=1000))
    return client.delete(*keys) if keys else 0


def queue_key(queue: str) -> str:
    """The Redis list holding ``queue``'s messages."""
    return TEST_ENV["REDIS_KEY_PREFIX"] + queue
