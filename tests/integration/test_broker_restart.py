"""A broker restart under a real solo worker: the batching stages keep moving.

Redis: a private server, killed and started again. RabbitMQ (the
``BROKER_URL=amqp://…`` run): a private vhost whose client connections the
broker closes, as a restart does (the shared broker itself stays up).

celery-batches 0.11 never re-arms its flush timer after the consumer
reconnects (upstream #107): below BATCH_MAX messages nothing flushes, so a
single intent sent after the restart would sit unacknowledged forever.
No beat runs here, so re-drive cannot hide the defect.
"""

from __future__ import annotations

import random
import secrets
import time
from datetime import date

import pytest

from tests import factories as f
from tests.conftest import BROKER_IS_AMQP, TEST_DB, free_port
from tests.support import processes, rabbitmq
from tests.support.scratchdb import admin_url

pytestmark = [pytest.mark.integration, pytest.mark.broker]
redis_only = pytest.mark.skipif(BROKER_IS_AMQP, reason="the Redis broker's restart")
amqp_only = pytest.mark.skipif(not BROKER_IS_AMQP, reason="the RabbitMQ run (BROKER_URL=amqp)")


@pytest.fixture
def private_stack(settings, vault):
    """Its own database and Redis, a solo pipeline worker and a relay on them."""
    from shared.db.engine import get_engine
    from shared.db.migrate import drop_database, upgrade

    url = settings.database_url.rsplit("/", 1)[0] + f"/clearhouse_broker_{secrets.token_hex(3)}"
    upgrade(admin_url(url))
    port = free_port()
    redis = processes.redis_server(port)
    env = {"DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "BATCH_MAX": "100"}
    worker = processes.celery_worker(
        "broker-restart",
        queues=processes.PAYMENT_QUEUES,
        pool="solo",
        concurrency=1,
        env=env,
    )
    relay = processes.relay(env)
    engine = get_engine(url, "worker", settings.db_timeouts_worker)
    stack = {"engine": engine, "redis": redis, "port": port, "worker": worker}
    try:
        yield stack
    finally:
        relay.stop()
        worker.stop()
        stack["redis"].stop()
        stack["engine"].dispose()
        drop_database(admin_url(url))


def _submit(engine, vault) -> str:
    from shared.db.uow import UnitOfWork
    from shared.domain.validation import validate_create
    from shared.services import intents, merchants

    with UnitOfWork(engine) as u:
        merchant = merchants.create_merchant(u, vault, "broker restart", None)
        req = validate_create(f.card_body(f.random_visa(random.Random()), 500), date.today())
        row = intents.create(
            u, vault, merchant["merchant_id"], req, client_ip="192.0.2.7", request_id=None
        )
        u.commit()
    return row.id


def _park(port: int, task: str, queue: str) -> None:
    from workers.celery_app import app

    with app.connection(f"redis://127.0.0.1:{port}/0") as conn:
        app.send_task(task, args=[["pi_parked"]], queue=queue, countdown=3600, connection=conn)


def _wait_until_held(port: int, timeout: float = 10) -> None:
    """Wait until the worker holds a message unacknowledged (Redis' ``unacked`` hash)."""
    import redis

    from tests.conftest import TEST_ENV

    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout
    while client.hlen(TEST_ENV["REDIS_KEY_PREFIX"] + "unacked") == 0:
        assert time.monotonic() < deadline, "the worker never fetched the parked message"
        time.sleep(0.05)  # polling interval


@redis_only
def test_one_intent_after_a_redis_restart_is_processed(private_stack, vault):
    engine = private_stack["engine"]
    first = _submit(engine, vault)
    assert f.wait_until_final(engine, [first])[first].status == "succeeded"

    # A message due in an hour keeps the fraud task's flush timer armed (as
    # steady traffic or an authorization retry would) when the broker goes.
    _park(private_stack["port"], "clearhouse.fraud", "fraud")
    worker = private_stack["worker"]
    _wait_until_held(private_stack["port"])
    private_stack["redis"].kill()
    private_stack["redis"].stop()
    worker.wait_for("Connection to broker lost", timeout=30)
    private_stack["redis"] = processes.redis_server(private_stack["port"])
    # Wait until the consumer has reconnected (Celery logs it) before sending.
    deadline_text = "Connected to redis://"
    worker.wait_for_count(deadline_text, 2, timeout=60)

    after = _submit(engine, vault)
    assert f.wait_until_final(engine, [after], timeout=30)[after].status == "succeeded"


@pytest.fixture
def amqp_stack(settings, vault):
    """Its own database and vhost, a solo pipeline worker and a relay on them."""
    import os

    from shared.db.engine import get_engine
    from shared.db.migrate import drop_database, upgrade

    tag = secrets.token_hex(3)
    url = settings.database_url.rsplit("/", 1)[0] + f"/clearhouse_broker_{tag}"
    upgrade(admin_url(url))
    broker = rabbitmq.vhost_url(os.environ["BROKER_URL"], f"{TEST_DB}_restart_{tag}")
    env = {"DATABASE_URL": url, "BROKER_URL": broker, "BATCH_MAX": "100"}
    worker = processes.celery_worker(
        "broker-restart",
        queues=processes.PAYMENT_QUEUES,
        pool="solo",
        concurrency=1,
        env=env,
    )
    relay = processes.relay(env)
    engine = get_engine(url, "worker", settings.db_timeouts_worker)
    try:
        yield {"engine": engine, "broker": broker, "worker": worker}
    finally:
        relay.stop()
        worker.stop()
        engine.dispose()
        drop_database(admin_url(url))
        rabbitmq.drop_vhost(rabbitmq.vhost_of(broker))


@amqp_only
def test_one_intent_after_a_rabbitmq_reconnect_is_processed(amqp_stack, vault):
    from kombu import Connection

    from workers.celery_app import app

    engine, worker = amqp_stack["engine"], amqp_stack["worker"]
    first = _submit(engine, vault)
    assert f.wait_until_final(engine, [first])[first].status == "succeeded"

    # As on Redis: a parked message keeps the fraud task's flush timer armed.
    with Connection(amqp_stack["broker"]) as conn:
        app.send_task(
            "clearhouse.fraud", args=[["pi_parked"]], queue="fraud", countdown=3600, connection=conn
        )
    deadline = time.monotonic() + 10
    while rabbitmq.backlog(amqp_stack["broker"], ["fraud"]) != (0, 1):
        assert time.monotonic() < deadline, "the worker never fetched the parked message"
        time.sleep(0.1)  # polling interval
    rabbitmq.close_connections(amqp_stack["broker"])
    worker.wait_for("Connection to broker lost", timeout=30)
    worker.wait_for_count("Connected to amqp://", 2, timeout=60)

    after = _submit(engine, vault)
    assert f.wait_until_final(engine, [after], timeout=30)[after].status == "succeeded"
