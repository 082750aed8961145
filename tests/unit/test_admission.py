"""Admission control's verdict: admit under the bound, refuse at it, wait longer further over."""

import pytest

from shared.domain.admission import RETRY_AFTER_MAX_S, count_cap, decide, decide_wait


@pytest.mark.parametrize("backlog", [0, 1, 4_999])
def test_under_the_bound_every_create_is_admitted(backlog):
    verdict = decide(backlog, 5_000)
    assert verdict.admitted and verdict.retry_after_s is None


@pytest.mark.parametrize("backlog", [0, 10**9])
def test_a_bound_of_zero_turns_it_off(backlog):
    assert decide(backlog, 0).admitted
    assert decide(backlog, -1).admitted


def test_at_the_bound_a_create_is_refused_with_one_second():
    verdict = decide(5_000, 5_000)
    assert not verdict.admitted and verdict.retry_after_s == 1


@pytest.mark.parametrize(
    ("backlog", "retry_after_s"),
    [
        (5_499, 1),  # less than a tenth over
        (5_500, 2),  # a tenth over: one second more
        (7_500, 6),
        (9_499, 9),
        (9_500, 10),  # nine tenths over: the most
        (10_000, 10),
        (10**9, 10),
    ],
)
def test_retry_after_grows_a_second_per_tenth_of_the_bound_over_it(backlog, retry_after_s):
    assert decide(backlog, 5_000).retry_after_s == retry_after_s


def test_a_tiny_bound_still_answers_whole_seconds_within_range():
    answers = [decide(n, 3).retry_after_s for n in range(3, 12)]
    assert answers == sorted(answers)
    assert answers[0] == 1 and answers[-1] == RETRY_AFTER_MAX_S


@pytest.mark.parametrize("bound", [1, 3, 5_000])
def test_counting_past_the_cap_never_changes_the_verdict(bound):
    cap = count_cap(bound)
    assert decide(cap, bound).retry_after_s == RETRY_AFTER_MAX_S
    assert decide(cap, bound) == decide(cap + 1, bound) == decide(cap * 10, bound)


@pytest.mark.parametrize("waited_ms", [None, 0.0, 99.9, 100.0])
def test_a_create_that_waited_up_to_the_queue_bound_is_admitted(waited_ms):
    assert decide_wait(waited_ms, 100).admitted


def test_a_create_that_waited_past_the_queue_bound_is_refused_with_one_second():
    verdict = decide_wait(100.1, 100)
    assert not verdict.admitted and verdict.retry_after_s == 1


@pytest.mark.parametrize("bound", [0, -5])
def test_a_queue_bound_of_zero_turns_it_off(bound):
    assert decide_wait(10**9, bound).admitted
