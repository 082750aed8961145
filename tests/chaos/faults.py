"""A fault schedule drawn from a seed, and the injection of each fault.

The seed is printed at the start; ``CHAOS_SEED`` replays the same schedule
(which fault, in which order, at which second), so a failure can be
reproduced — TigerBeetle's seeded simulator, at the level of processes.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

# Every kind of fault; the short run (make test) uses the first three.
SHORT = ("redis_restart", "postgres_restart", "kill:worker_pipeline")
ALL = (
    *SHORT,
    "kill:relay",
    "kill:worker_instant",
    "kill:worker_background",
    "kill:beat",
    "kill:api",
    "webhook_503",
)
POSTGRES_DOWN_S = 5.0
WEBHOOK_DOWN_S = 30.0


@dataclass
class Fault:
    name: str
    at_s: float  # seconds after the load started
    started: float = 0.0  # time.time() when injected
    ended: float = 0.0  # time.time() when the fault was over (service back)


def schedule(seed: int, kinds: tuple[str, ...], warmup_s: float, gap_s: tuple[float, float]):
    """The faults in a seeded order, each at a seeded time after the previous one."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    at = warmup_s
    out = []
    for name in order:
        out.append(Fault(name, round(at, 1)))
        at += rng.uniform(*gap_s)
    return out


def inject(fault: Fault, stack, receiver) -> None:
    """Inject one fault; return once the broken part is back (or the fault started)."""
    fault.started = time.time()
    kind, _, target = fault.name.partition(":")
    if kind == "kill":
        proc = stack.procs[target]
        before = proc.restarts
        proc.kill()
        # Over when the supervisor has started it again (the API: answering).
        deadline = time.monotonic() + 60
        while proc.restarts == before and time.monotonic() < deadline:
            time.sleep(0.1)
        if target == "api":
            stack.wait_api()
    elif kind == "redis_restart":
        # Killed and started again empty: every queue, unacked message and
        # beat key is gone.
        stack.redis.kill()
        stack.redis.start()
    elif kind == "postgres_restart":
        stack.pg.stop("immediate")
        time.sleep(POSTGRES_DOWN_S)  # the outage itself, not a wait for a result
        stack.pg.start()
    elif kind == "webhook_503":
        receiver.unavailable_for(WEBHOOK_DOWN_S)
    else:
        raise ValueError(f"unknown fault {fault.name!r}")
    fault.ended = time.time()
    if kind == "webhook_503":
        fault.ended += WEBHOOK_DOWN_S
