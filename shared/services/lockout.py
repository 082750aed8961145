"""Lock a client id out of the OAuth endpoints after repeated failed authentications.

AUTH_LOCKOUT_FAILURES failures within AUTH_LOCKOUT_WINDOW_S lock the id for
AUTH_LOCKOUT_S, even with the right secret. Ids are counted whether or not they
exist, so the answer never tells which do. Redis away: nothing is counted and
nobody is locked (the breaker fails open).
"""

from __future__ import annotations

import math

from shared.config import Settings
from shared.security.failures import FailureCounter
from shared.security.redis_breaker import RedisBreaker

CHECK = "lockout"


class ClientLocked(Exception):
    """The client id is locked for ``retry_after_s`` more seconds."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"locked for {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Lockout:
    def __init__(self, counter: FailureCounter, breaker: RedisBreaker, settings: Settings):
        self._counter = counter
        self._breaker = breaker
        self._failures = settings.auth_lockout_failures
        self._window_s = settings.auth_lockout_window_s
        self._lock_s = settings.auth_lockout_s

    @property
    def enabled(self) -> bool:
        return self._failures > 0 and self._lock_s > 0

    def ensure_open(self, client_id: str | None) -> None:
        """Raise ClientLocked if ``client_id`` is locked out."""
        if not client_id or not self.enabled:
            return
        ms = self._breaker.call(CHECK, self._counter.locked_ms, client_id)
        if ms:
            raise ClientLocked(max(1, math.ceil(ms / 1000)))

    def failed(self, client_id: str | None) -> None:
        """Count a failed authentication of ``client_id``."""
        if not client_id or not self.enabled:
            return
        self._breaker.call(
            CHECK, self._counter.record, client_id, self._failures, self._window_s, self._lock_s
        )
