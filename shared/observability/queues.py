"""How many messages wait in a Celery queue on Redis (the queue-depth gauge, the dispatcher)."""

from __future__ import annotations

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
