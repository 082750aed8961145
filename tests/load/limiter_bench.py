"""What the rate limiter costs per request: the falcon app in-process, limits on vs off.

``python -m tests.load.limiter_bench`` (REDIS_URL's server, keys under a prefix of
its own, deleted after). Times ``LIMITER_BENCH_N`` requests of GET /health (one
key: the IP's) through the whole middleware stack with the limiter on and off,
``LIMITER_BENCH_RUNS`` times each, interleaved; the same for the bare script with
two keys (client and IP, as an authenticated request checks) and for a PING.
Prints medians, wall and CPU of this process, in microseconds. Nothing asserts
them: figures for the README, not a test.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import tempfile
import time

import falcon.testing
import redis

from intake.app import create_app, redis_client_for
from shared.config import Settings
from shared.domain.ratelimit import Limit
from shared.security.throttle import Throttle

N = int(os.environ.get("LIMITER_BENCH_N") or 2000)
RUNS = int(os.environ.get("LIMITER_BENCH_RUNS") or 7)
# High enough that nothing is refused: what is timed is the check, not a 429.
ON = dict(rate_limit_per_ip=1e6, rate_limit_per_client=1e6)
OFF = dict(rate_limit_per_ip=0, rate_limit_per_client=0)


def timed(fn) -> tuple[float, float]:
    """(wall µs, CPU µs) per call of ``fn`` over N calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(N):
        fn()
    return (time.perf_counter() - wall) / N * 1e6, (time.process_time() - cpu) / N * 1e6


def _evalsha(conn) -> tuple[int, int]:
    stats = conn.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def main() -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"limiter-bench:{secrets.token_hex(4)}:"
    conn = redis_client_for(url)
    base = Settings.from_env(redis_url=url, redis_key_prefix=prefix, key_dir=tempfile.mkdtemp())
    clients = {
        name: falcon.testing.TestClient(
            create_app(base.replace(**limits), engine=object(), redis_client=conn)
        )
        for name, limits in (("on", ON), ("off", OFF))
    }
    throttle = Throttle(conn, prefix)
    two = [("client:bench", Limit(1e6, 10**6)), ("ip:bench", Limit(1e6, 10**6))]
    cases = {
        "health_limiter_on": lambda: clients["on"].simulate_get("/health"),
        "health_limiter_off": lambda: clients["off"].simulate_get("/health"),
        "script_two_keys": lambda: throttle.check(two),
        "redis_ping": conn.ping,
    }
    for fn in cases.values():  # warm up: connections, script cache, imports
        for _ in range(200):
            fn()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    script = {}
    try:
        for _ in range(RUNS):
            for name, fn in cases.items():
                before = _evalsha(conn)
                samples[name].append(timed(fn))
                if name == "script_two_keys":
                    calls, usec = (a - b for a, b in zip(_evalsha(conn), before, strict=True))
                    script.setdefault("server_us", []).append(usec / max(calls, 1))
    finally:
        keys = list(conn.scan_iter(match=prefix + "*"))
        if keys:
            conn.delete(*keys)
    out = {
        name: {
            "wall_us": round(statistics.median(w for w, _ in got), 1),
            "cpu_us": round(statistics.median(c for _, c in got), 1),
        }
        for name, got in samples.items()
    }
    on, off = out["health_limiter_on"], out["health_limiter_off"]
    out["limiter_cost_per_request"] = {
        "wall_us": round(on["wall_us"] - off["wall_us"], 1),
        "cpu_us": round(on["cpu_us"] - off["cpu_us"], 1),
    }
    # Redis's own time per script run (INFO commandstats), without the network and waits.
    out["script_two_keys"]["redis_server_us"] = round(statistics.median(script["server_us"]), 1)
    out["n"], out["runs"], out["redis"] = N, RUNS, redis.Redis.from_url(url).info()["redis_version"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
