"""When an operator account locks: so many failed logins within a window lock it a while.

Pure: the caller loads the account's failure state, asks here, and stores the
answer. The count starts over once the window since the first failure has
passed, and again when the account locks (after the lock, a new run of
failures is needed to lock it again). A success clears it (``CLEAR``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Policy:
    failures: int
    window_s: int
    lock_s: int

    @property
    def enabled(self) -> bool:
        return self.failures > 0 and self.lock_s > 0


@dataclass(frozen=True)
class FailureState:
    failed_logins: int = 0
    first_failure_at: datetime | None = None
    locked_until: datetime | None = None

    @property
    def as_columns(self) -> dict:
        return {
            "failed_logins": self.failed_logins,
            "first_failure_at": self.first_failure_at,
            "locked_until": self.locked_until,
        }


CLEAR = FailureState()


def locked_for_s(state: FailureState, now: datetime) -> int:
    """Whole seconds the account stays locked (0: not locked)."""
    if state.locked_until is None or state.locked_until <= now:
        return 0
    return max(1, math.ceil((state.locked_until - now).total_seconds()))


def after_failure(state: FailureState, now: datetime, policy: Policy) -> FailureState:
    """The state once one more failure at ``now`` is counted (``locked_until`` set: it locks)."""
    if not policy.enabled or locked_for_s(state, now):
        # Failures while locked do not extend the lock: an attacker could not
        # keep the owner out longer than by failing again when it ends.
        return state
    window = timedelta(seconds=policy.window_s)
    if state.first_failure_at is None or now - state.first_failure_at >= window:
        state = FailureState(0, now, None)
    count = state.failed_logins + 1
    if count >= policy.failures:
        return FailureState(0, None, now + timedelta(seconds=policy.lock_s))
    return FailureState(count, state.first_failure_at, None)
