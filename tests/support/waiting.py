"""Waiting on conditions, never on the clock: what tests poll instead of sleeping."""

from __future__ import annotations

import os
import re
import time
from collections import Counter

from shared.observability.queues import PRIORITY_SUFFIXES
from tests.support import rabbitmq

# kombu's Redis transport keeps one list per queue and priority step (0 is
# the plain list), and every delivered but unacknowledged message in a hash
# and a sorted set until the worker acks it (acks_late: after the task ran).
_RAN = re.compile(r'"message": "(clearhouse\.[\w.]+) ran (\d+) message\(s\)')


def until(predicate, timeout: float = 30, interval: float = 0.1, what="the condition"):
    """Poll ``predicate`` until it returns something truthy, and return that.

    ``what`` names the condition in the timeout's message; a callable is
    called then, so the message can show the state at the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {described}")
        time.sleep(interval)


def wait_until(predicate, timeout: float, what, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; return that (``until``'s
    other spelling: ``timeout`` and ``what`` first)."""
    return until(predicate, timeout=timeout, interval=interval, what=what)


def broker_backlog(redis_client, prefix: str, queues) -> tuple[int, int]:
    """(messages waiting in ``queues``, messages delivered and not yet acked), one snapshot."""
    broker = os.environ.get("BROKER_URL", "")
    if rabbitmq.is_amqp(broker):  # the RabbitMQ run: the broker's own counts
        return rabbitmq.backlog(broker, queues)
    pipe = redis_client.pipeline(transaction=True)  # MULTI: both read at one instant
    for q in queues:
        for suffix in PRIORITY_SUFFIXES:
            pipe.llen(prefix + q + suffix)
    pipe.hlen(prefix + "unacked")
    pipe.zcard(prefix + "unacked_index")
    *lengths, unacked, index = pipe.execute()
    return sum(lengths), max(unacked, index)


def drain(redis_client, prefix: str, queues, timeout: float = 30, checks: int = 3) -> None:
    """Wait until no message waits in ``queues`` and none is delivered but unacked.

    With acks_late a message stays unacked until its task has run (for a
    celery-batches task, until its batch was flushed), and a task publishes
    its next step before it acks its own message: so "nothing queued and
    nothing unacked" means every message sent so far has been run. The
    snapshot must hold ``checks`` times in a row, to step over the instant
    between a worker popping a message and recording it as unacked.
    """
    deadline = time.monotonic() + timeout
    quiet = 0
    while True:
        waiting, unacked = broker_backlog(redis_client, prefix, queues)
        quiet = quiet + 1 if waiting == unacked == 0 else 0
        if quiet >= checks:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"broker not drained after {timeout:g} s: {waiting} queued, {unacked} unacked"
            )
        time.sleep(0.1)


def messages_run(log: str) -> Counter:
    """Messages each batch task ran, from the worker's "<task> ran N message(s)" lines."""
    ran: Counter = Counter()
    for task, n in _RAN.findall(log):
        ran[task] += int(n)
    return ran
