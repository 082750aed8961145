"""How many messages wait in a Celery queue (the queue-depth gauge, the dispatcher).

Redis (the default broker): the lengths of kombu's lists. RabbitMQ
(``BROKER_URL=amqp://…``): a passive ``queue.declare``'s message count. Both
count what waits to be delivered, not what a worker holds unacknowledged.
"""

from __future__ import annotations

import contextlib
import threading

# kombu's Redis transport keeps one list per queue and priority step; a
# message without a priority sits in the plain list.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def depths(redis_client, prefix: str, queues) -> dict[str, int]:
    """Messages waiting in each of ``queues`` (every priority list), in one round trip."""
    queues = list(queues)
    pipe = redis_client.pipeline(transaction=False)
    for q in queues:
        for suffix in PRIORITY_SUFFIXES:
            pipe.llen(prefix + q + suffix)
    lengths = pipe.execute()
    n = len(PRIORITY_SUFFIXES)
    return {q: sum(lengths[i * n : (i + 1) * n]) for i, q in enumerate(queues)}


class AmqpDepths:
    """``depths`` for RabbitMQ: one connection, kept, re-made after a failure.

    A passive declare never creates a queue; one no worker has declared yet
    holds nothing, so it counts 0. Callable from several threads (a scrape
    and the dispatcher may overlap): one lock around the connection.
    """

    def __init__(self, url: str, timeout_s: float = 1.0):
        self._url = url
        self._timeout = timeout_s
        self._conn = None
        self._channel = None
        self._lock = threading.Lock()

    def __call__(self, queues) -> dict[str, int]:
        with self._lock:
            try:
                return {q: self._count(q) for q in queues}
            except Exception:
                self.close_unlocked()  # a fresh connection next time
                raise

    def _count(self, queue: str) -> int:
        from amqp.exceptions import NotFound

        channel = self._open_channel()
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except NotFound:
            # The broker closed the channel with the 404: open another.
            self._channel = None
            return 0

    def _open_channel(self):
        from kombu import Connection

        if self._conn is None:
            # Socket timeouts too: a stalled broker must not hang a scrape.
            t = self._timeout
            self._conn = Connection(
                self._url,
                connect_timeout=t,
                transport_options={"read_timeout": t, "write_timeout": t},
            )
            self._conn.connect()
        if self._channel is None:
            self._channel = self._conn.connection.channel()
        return self._channel

    def ping(self) -> bool:
        """True when the broker answers (the API's /ready)."""
        with self._lock:
            try:
                # Opening and closing a channel is one round trip to the broker.
                self._open_channel()
                self._conn.connection.channel().close()
                return True
            except Exception:
                self.close_unlocked()
                return False

    def close_unlocked(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                conn.release()


def reader(settings, redis_client=None):
    """``queues -> {queue: depth}`` for the broker ``settings`` name."""
    if settings.broker_is_amqp:
        return AmqpDepths(settings.broker)
    if redis_client is None:
        import redis

        redis_client = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=1, socket_timeout=1
        )
    return lambda queues: depths(redis_client, settings.redis_key_prefix, queues)
