"""Failed client authentications in Redis: a sliding window per client id, and its lock.

One script records a failure and, at the threshold, sets the lock (expiring by
itself) and clears the window, so the count starts again after the lock.
"""

from __future__ import annotations

import secrets

from shared.security.throttle import key_part

# KEYS: the failures (a sorted set of failure times), the lock.
# ARGV: window_us, failures that lock, lock_ms, a unique member.
# Returns the lock's length in ms when this failure set it, else 0.
RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[3]))
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
"""


class FailureCounter:
    """Keys: ``prefix`` + ``lockout:fail:<id>`` and ``lockout:lock:<id>`` (the segment
    before the id is fixed, so no id's key can be another id's of the other kind)."""

    def __init__(self, redis_client, prefix: str = ""):
        self._redis = redis_client
        self._record = None  # registered on first use: building the app needs no Redis
        self._prefix = prefix + "lockout:"

    def lock_key(self, client_id: str) -> str:
        return self._prefix + "lock:" + key_part(client_id)

    def locked_ms(self, client_id: str) -> int:
        """Milliseconds the client stays locked (0: not locked)."""
        return max(0, int(self._redis.pttl(self.lock_key(client_id))))

    def record(self, client_id: str, failures: int, window_s: float, lock_s: float) -> int:
        """Count one failure; the lock's length in ms if this one set it, else 0."""
        keys = [self._prefix + "fail:" + key_part(client_id), self.lock_key(client_id)]
        args = [int(window_s * 1e6), failures, max(1, int(lock_s * 1000)), secrets.token_hex(8)]
        if self._record is None:
            self._record = self._redis.register_script(RECORD)
        return int(self._record(keys=keys, args=args))
