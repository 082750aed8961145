"""Queues of its own for a second worker: a Redis key prefix, or a RabbitMQ vhost."""

from __future__ import annotations

import os

from tests.support import rabbitmq


def private_env(prefix: str) -> dict:
    """Env for a worker whose queues no other worker of the session consumes.

    ``prefix`` (say ``"<session>:faults:"``) becomes the worker's
    REDIS_KEY_PREFIX; on the RabbitMQ run its BROKER_URL names a vhost of
    that name too, since the prefix does not reach AMQP queue names.
    """
    return {"REDIS_KEY_PREFIX": prefix, **private_vhost(prefix.rstrip(":").replace(":", "_"))}


def private_vhost(name: str) -> dict:
    """On the RabbitMQ run, ``{"BROKER_URL": …}`` naming a new vhost ``name``; else ``{}``."""
    broker = os.environ.get("BROKER_URL", "")
    if not rabbitmq.is_amqp(broker):
        return {}
    return {"BROKER_URL": rabbitmq.vhost_url(broker, name)}


def producer(name: str, env: dict):
    """A Celery app that publishes to the queues ``env`` (``private_env``) names."""
    from celery import Celery

    from shared.config import get_settings

    settings = get_settings()
    app = Celery(name, broker=env.get("BROKER_URL") or settings.broker)
    app.conf.update(task_serializer="json")
    if not rabbitmq.is_amqp(app.conf.broker_url or ""):
        app.conf.broker_transport_options = {"global_keyprefix": env["REDIS_KEY_PREFIX"]}
    return app
