"""Admission control: refuse new intents while the pipeline's backlog is past its bound.

The backlog is the count of intents accepted and not yet through the
pipeline's first stages (``processing``); the bound is ``MAX_BACKLOG``. At the
bound a create is refused, and the answer says when to come back: 1 s just at
the bound, one second more per tenth of the bound beyond it, at most
``RETRY_AFTER_MAX_S`` (reached at 0.9 of the bound over it, so counting need
never go past ``count_cap``).

The API's own queue is bounded too (``MAX_QUEUE_WAIT_MS``): a create that
waited longer than that for one of the API's threads is refused, 1 s to wait.
Under overload that wait, not the pipeline, is most of the accept latency; a
refusal costs the API a fraction of a create, so the creates it does accept
are answered within about the bound plus their own time.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRY_AFTER_MAX_S = 10
# Tenths of the bound over it per second of Retry-After.
_STEPS = 10


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    retry_after_s: int | None = None  # refused: whole seconds to wait, at least 1


ADMIT = Verdict(True)


def decide(backlog: int, bound: int) -> Verdict:
    """Admit while fewer than ``bound`` intents wait (``bound`` 0 or less: always)."""
    if bound <= 0 or backlog < bound:
        return ADMIT
    over = backlog - bound
    return Verdict(False, min(RETRY_AFTER_MAX_S, 1 + _STEPS * over // bound))


def count_cap(bound: int) -> int:
    """How far the backlog needs counting: past it, the verdict never changes."""
    return 2 * bound


def decide_wait(waited_ms: float | None, bound_ms: int) -> Verdict:
    """Admit a request that waited less than ``bound_ms`` for a thread (0 or less: always).

    ``waited_ms`` None: the server does not say (another worker class), so admit.
    """
    if bound_ms <= 0 or waited_ms is None or waited_ms <= bound_ms:
        return ADMIT
    return Verdict(False, 1)
