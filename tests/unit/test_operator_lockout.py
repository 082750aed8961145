"""When an operator account locks (shared/domain/operator_lockout.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.operator_lockout import CLEAR, Policy, after_failure, locked_for_s

POLICY = Policy(failures=5, window_s=900, lock_s=900)
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _fail(times, state=CLEAR, policy=POLICY):
    for at in times:
        state = after_failure(state, at, policy)
    return state


def test_the_fifth_failure_within_the_window_locks_for_the_lock_time():
    four = _fail(T0 + timedelta(minutes=i) for i in range(4))
    assert four.failed_logins == 4 and locked_for_s(four, T0 + timedelta(minutes=4)) == 0
    at = T0 + timedelta(minutes=4)
    locked = after_failure(four, at, POLICY)
    assert locked.locked_until == at + timedelta(seconds=900)
    assert locked_for_s(locked, at) == 900
    assert locked_for_s(locked, at + timedelta(seconds=899.5)) == 1
    assert locked_for_s(locked, at + timedelta(seconds=900)) == 0


def test_failures_spread_over_more_than_the_window_do_not_lock():
    state = _fail(T0 + timedelta(minutes=4 * i) for i in range(10))
    assert state.locked_until is None


def test_failures_while_locked_do_not_extend_the_lock():
    locked = _fail(T0 + timedelta(seconds=i) for i in range(5))
    assert after_failure(locked, T0 + timedelta(minutes=10), POLICY) == locked


def test_after_the_lock_a_new_run_of_failures_is_needed():
    locked = _fail(T0 + timedelta(seconds=i) for i in range(5))
    later = locked.locked_until + timedelta(seconds=1)
    state = after_failure(locked, later, POLICY)
    assert state.failed_logins == 1 and locked_for_s(state, later) == 0


def test_a_policy_of_zero_never_locks():
    off = Policy(failures=0, window_s=900, lock_s=900)
    assert _fail((T0 for _ in range(50)), policy=off) == CLEAR
