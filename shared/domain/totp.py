"""Which TOTP code to accept (RFC 6238): within one time step of now, and each step once.

Pure: the caller gives the secret's code for a step (``code_at``, pyotp in the
service) and the operator's last accepted step; this decides. A code matching
a step at or before the last accepted one is a replay, even inside the window:
an observed code must never work twice, nor an older one after a newer one.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

STEP_S = 30
# RFC 6238 §5.2 allows "at most one time step" of clock drift either way.
WINDOW_STEPS = 1


@dataclass(frozen=True)
class Verdict:
    """``step`` to claim when accepted; else ``reason``: ``totp_invalid`` or ``totp_replayed``."""

    step: int | None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.step is not None


def step_at(now: float) -> int:
    """The time step ``now`` (Unix seconds) falls in."""
    return int(now // STEP_S)


def decide(code: str, code_at: Callable[[int], str], now: float, last_step: int | None) -> Verdict:
    """Accept ``code`` if it is the code of a step within the window and after ``last_step``."""
    current = step_at(now)
    matching = [
        step
        for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1)
        # Constant time per comparison, and every step compared: no early exit to time.
        if hmac.compare_digest(code_at(step).encode(), code.encode())
    ]
    fresh = [step for step in matching if last_step is None or step > last_step]
    if fresh:
        return Verdict(max(fresh))
    return Verdict(None, "totp_replayed" if matching else "totp_invalid")
