"""GCRA arithmetic (shared/domain/ratelimit.py): bursts, refill, several keys, headers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.ratelimit import US, Limit, Verdict, decide, tighter, verdicts

T0 = 1_764_000_000 * US


def run(limits, times, stored=None):
    """Allowed flags of requests at ``times`` against ``limits``; the final TATs."""
    stored = stored or [None] * len(limits)
    flags = []
    for now in times:
        allowed, tats = decide(limits, now, stored)
        flags.append(allowed)
        if allowed:
            stored = tats
    return flags, stored


def test_a_limit_of_no_rate_is_none_and_the_burst_is_rate_times_seconds():
    assert Limit.of(0, 2) is None and Limit.of(-1, 2) is None
    assert Limit.of(100, 2) == Limit(100, 200)
    assert Limit.of(0.2, 1) == Limit(0.2, 1)  # at least one request
    assert Limit(100, 200).interval_us == 10_000


def test_a_burst_passes_then_the_next_waits_one_interval():
    lim = Limit(10, 5)  # 100 ms apart, 5 at once
    flags, _ = run([lim], [T0] * 6)
    assert flags == [True] * 5 + [False]
    flags, _ = run([lim], [T0] * 5 + [T0 + 99_999, T0 + 100_000])
    assert flags == [True] * 5 + [False, True]


def test_remaining_reset_and_retry_after():
    lim = Limit(1, 3)
    stored = [None]
    seen = []
    for _ in range(4):
        allowed, tats_after = decide([lim], T0, stored)
        before = [T0 if s is None else max(s, T0) for s in stored]
        seen.append(verdicts([lim], T0, before, allowed)[0])
        if allowed:
            stored = tats_after
    assert [v.remaining for v in seen] == [2, 1, 0, 0]
    assert [v.reset_s for v in seen] == [1, 2, 3, 3]
    assert seen[-1] == Verdict(False, 3, 0, 3, 1)
    assert seen[-1].headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3",
        "Retry-After": "1",
    }
    assert "Retry-After" not in seen[0].headers()


def test_a_request_refused_by_one_key_costs_the_other_nothing():
    tight, loose = Limit(1, 1), Limit(1, 10)
    flags, tats = run([tight, loose], [T0] * 5)
    assert flags == [True, False, False, False, False]
    assert tats[1] == T0 + loose.interval_us  # charged once, for the one that passed
    found = verdicts([tight, loose], T0, [max(t, T0) for t in tats], False)
    assert found[0].retry_after_s == 1 and found[1].retry_after_s is None
    assert found[1].remaining == 9
    assert tighter(found) is found[0]


def test_tighter_reports_the_fewest_remaining_or_the_longest_wait():
    a, b = Verdict(True, 10, 3, 1), Verdict(True, 100, 50, 1)
    assert tighter([b, a]) is a
    late, soon = Verdict(False, 10, 0, 9, 9), Verdict(False, 5, 0, 2, 2)
    assert tighter([soon, a, late]) is late


@given(
    rate=st.integers(1, 1000),
    burst=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 50_000), min_size=1, max_size=300),
)
def test_never_more_than_the_burst_plus_the_rate_over_any_stretch(rate, burst, gaps):
    lim = Limit(rate, burst)
    times, now = [], T0
    for gap in gaps:
        now += gap
        times.append(now)
    flags, _ = run([lim], times)
    passed = [t for t, ok in zip(times, flags, strict=True) if ok]
    for i, start in enumerate(passed):
        for j in range(i, len(passed)):
            span = passed[j] - start
            assert j - i + 1 <= burst + span // lim.interval_us
