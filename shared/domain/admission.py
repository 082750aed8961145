"""Admission control: refuse new intents while the pipeline's backlog is past its bound.

The backlog is the count of intents accepted and not yet through the
pipeline's first stages (``processing``); the bound is ``MAX_BACKLOG``. At the
bound a create is refused, and the answer says when to come back: 1 s just at
the bound, one second more per tenth of the bound beyond it, at most
``RETRY_AFTER_MAX_S`` (reached at 0.9 of the bound over it, so counting need
never go past ``count_cap``).
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
