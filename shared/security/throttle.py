"""Rate limits in Redis: one Lua script checks every key of a request in one round trip.

The script is shared.domain.ratelimit.decide in Lua, on Redis's clock (every API
process agrees on ``now``): it reads each key's TAT, and only if every key
allows the request writes them all, each expiring when its bucket is full
again. redis-py's ``register_script`` runs it by EVALSHA (re-sent once by EVAL
after a Redis restart lost the script cache).
"""

from __future__ import annotations

import hashlib
import re

from shared.domain import ratelimit
from shared.domain.ratelimit import Limit, Verdict

# KEYS: one per limit. ARGV: interval_us, tolerance_us for each key, in order.
# Returns {allowed (1/0), now_us, tat_1, ..., tat_n}: each TAT before this request,
# at least now. '%.0f': tostring() would print 16-digit microseconds as 1.7e+15.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local allowed = 1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  if tat + interval - now > tolerance then allowed = 0 end
end
if allowed == 1 then
  for i = 1, #KEYS do
    local new = tats[i] + tonumber(ARGV[2 * i - 1])
    local ttl_ms = math.floor((new - now) / 1000) + 1
    redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', ttl_ms)
  end
end
local out = {allowed, string.format('%.0f', now)}
for i = 1, #KEYS do out[i + 2] = string.format('%.0f', tats[i]) end
return out
"""

_PLAIN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def key_part(value: str) -> str:
    """A key segment for a caller-given value: itself when short and plain, else a hash."""
    if _PLAIN.fullmatch(value):
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Throttle:
    """Checks (key, Limit) pairs in one round trip; keys go under ``prefix`` + ``rl:``."""

    def __init__(self, redis_client, prefix: str = ""):
        self._redis = redis_client
        self._script = None  # registered on first use: building the app needs no Redis
        self._prefix = prefix + "rl:"

    def check(self, checks: list[tuple[str, Limit]]) -> list[Verdict]:
        """One verdict per (key, limit); raises the Redis error if Redis is away."""
        keys = [self._prefix + key for key, _ in checks]
        limits = [limit for _, limit in checks]
        args = [n for lim in limits for n in (lim.interval_us, lim.tolerance_us)]
        if self._script is None:
            self._script = self._redis.register_script(GCRA)
        allowed, now, *tats = self._script(keys=keys, args=args)
        return ratelimit.verdicts(limits, int(now), [int(t) for t in tats], bool(int(allowed)))
