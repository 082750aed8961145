"""RabbitMQ as the broker: what the code does differently when BROKER_URL is amqp.

These run in both of make test's runs, against the RabbitMQ on this machine
(BROKER_URL's, else guest on 127.0.0.1:5672), each in a vhost of its own;
the rest of the broker's behaviour (the pipeline, priorities, redelivery,
the relay) is the `broker`-marked tests' again on RabbitMQ.
"""

from __future__ import annotations

import os
import secrets

import pytest

from tests.conftest import TEST_DB
from tests.support import rabbitmq

pytestmark = [pytest.mark.integration, pytest.mark.broker]

# The RabbitMQ run's broker, else the one on this machine (tests/README.md).
BASE = os.environ.get("BROKER_URL") or rabbitmq.LOCAL


@pytest.fixture
def vhost():
    """A broker URL on a fresh vhost of this test's own."""
    url = rabbitmq.vhost_url(BASE, f"{TEST_DB}_amqp_{secrets.token_hex(3)}")
    yield url
    rabbitmq.drop_vhost(rabbitmq.vhost_of(url))


def test_the_broker_setting_picks_the_transport(settings):
    from workers.celery_app import broker_transport_options, create_celery_app

    amqp = settings.replace(broker_url=BASE)
    assert amqp.broker_is_amqp and amqp.broker == BASE
    # Redis's options (visibility timeout, key prefix) mean nothing to RabbitMQ.
    assert broker_transport_options(amqp) == {}
    redis = settings.replace(broker_url="")
    assert not redis.broker_is_amqp and redis.broker == settings.redis_url
    assert broker_transport_options(redis)["global_keyprefix"] == settings.redis_key_prefix
    assert create_celery_app(amqp).connection_for_write().transport.driver_type == "amqp"


def test_queue_depth_reads_what_waits_on_rabbitmq(vhost, settings):
    """A passive declare's count: what waits, 0 for a queue nobody declared yet."""
    from kombu import Connection, Exchange, Queue

    from shared.observability import queues

    read = queues.reader(settings.replace(broker_url=vhost))
    assert read(["fraud", "limits"]) == {"fraud": 0, "limits": 0}  # neither declared yet
    fraud = Queue("fraud", Exchange("fraud", "direct"), "fraud")
    # Publisher confirms: without them publish returns before the broker has
    # queued the message, and the count raced it in CI (1 of 3 seen).
    with Connection(vhost, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        for n in range(3):
            producer.publish(
                {"n": n}, exchange=fraud.exchange, routing_key="fraud", declare=[fraud]
            )
    assert read(["fraud", "limits", "fees"]) == {"fraud": 3, "limits": 0, "fees": 0}
    assert read(["fraud"]) == {"fraud": 3}  # the channel a 404 closed was replaced
