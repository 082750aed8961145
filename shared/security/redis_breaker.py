"""Fail open, and fast, when Redis is away: a circuit breaker for the API's Redis checks.

The rate limiter and the lockout are protections, not the service: while
Redis is away a request goes through unchecked rather than failing. Each such
request counts in ``clearhouse_rate_limiter_unavailable_total{check}``; the
outage logs one line when it starts and one when it ends. After a failure the
breaker skips Redis for ``cooldown_s`` (then the next request tries again), so
an outage costs requests no connect timeout each, only one per cool-down.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from shared.db.faults import Outage
from shared.observability import metrics

log = logging.getLogger("clearhouse.ratelimit")

COOLDOWN_S = 1.0


class RedisBreaker:
    def __init__(self, cooldown_s: float = COOLDOWN_S, clock=time.monotonic):
        self._cooldown = cooldown_s
        self._clock = clock
        self._open_until = 0.0
        self.outage = Outage("redis (rate limits and lockout)", log)

    def call(self, check: str, fn, *args):
        """``fn(*args)``, or None (counted under ``check``) while Redis is away."""
        if self._clock() < self._open_until:
            metrics.RATE_LIMITER_UNAVAILABLE.labels(check).inc()
            return None
        try:
            result = fn(*args)
        except (RedisError, OSError) as exc:
            # Any Redis error, not only connection errors: a server out of memory
            # or read-only refuses scripts too, and must not turn into 500s.
            self._open_until = self._clock() + self._cooldown
            self.outage.failed(exc)
            metrics.RATE_LIMITER_UNAVAILABLE.labels(check).inc()
            return None
        if self.outage.down:
            self.outage.recovered()
        return result
