"""The bench's reference figures (tests/load/reference.py): the arithmetic behind
bare_max_per_s, intake_vs_bare and accept_p99_vs_bare."""

import pytest

from tests.load.reference import (
    combine,
    cpu_ms_per_request,
    half_load_rate,
    max_rate,
    ratio,
    reference_figures,
)


def test_max_rate_is_answers_in_the_window_per_second():
    assert max_rate(20_800, 10) == 2080.0
    assert max_rate(0, 20) == 0.0
    with pytest.raises(ValueError):
        max_rate(5, 0)


def test_ratio_is_missing_without_both_figures():
    assert ratio(610, 2080) == 0.293
    assert ratio(None, 2080) is None
    assert ratio(610, None) is None
    assert ratio(610, 0) is None


def test_half_load_is_half_the_saturation_unless_a_rate_is_given():
    assert half_load_rate(610) == 305.0
    assert half_load_rate(610, override=100) == 100.0
    # An intake that answered nothing still gets an offered rate to measure.
    assert half_load_rate(0) == 1.0


def test_the_issue_figures_miss_both_targets():
    # Issue 12: 610 creates/s against 2,080 for the bare endpoint, p99 7 times the bare one.
    fig = reference_figures(2080, 610, 305, {"p99": 10.0}, {"p99": 70.0})
    assert fig["intake_vs_bare"] == 0.293
    assert fig["accept_p99_vs_bare"] == 7.0
    assert fig["half_load_rate_per_s"] == 305
    assert fig["target"] == {
        "intake_vs_bare_min": 0.5,
        "accept_p99_vs_bare_max": 3.0,
        "met": False,
    }


def test_the_targets_are_met_at_their_bounds_and_not_without_a_latency():
    assert reference_figures(2000, 1000, 500, {"p99": 10.0}, {"p99": 30.0})["target"]["met"]
    assert not reference_figures(2000, 999, 500, {"p99": 10.0}, {"p99": 30.0})["target"]["met"]
    assert not reference_figures(2000, 1000, 500, {"p99": 10.0}, {"p99": 30.1})["target"]["met"]
    assert not reference_figures(2000, 1000, 500, None, {"p99": 30.0})["target"]["met"]


def test_slices_of_one_phase_combine_into_one_result():
    a = {
        "latencies_ms": [1.0, 2.0],
        "send_lag_ms": [0.1, 0.2],
        "errors": {"http_503": 1},
        "counts": {"accepted_in_window": 2, "sent": 3},
        "cpu_s": 0.5,
    }
    b = {
        "latencies_ms": [3.0],
        "send_lag_ms": [0.3],
        "errors": {"http_503": 2, "ConnectionResetError": 1},
        "counts": {"accepted_in_window": 1, "sent": 1},
        "cpu_s": 0.25,
    }
    assert combine([a, b]) == {
        "latencies_ms": [1.0, 2.0, 3.0],
        "send_lag_ms": [0.1, 0.2, 0.3],
        "errors": {"http_503": 3, "ConnectionResetError": 1},
        "counts": {"accepted_in_window": 3, "sent": 4},
        "cpu_s": 0.75,
    }
    assert a["counts"] == {"accepted_in_window": 2, "sent": 3}  # inputs untouched


def test_cpu_per_request_weighs_each_slice_by_its_answers():
    # 0.45 core for 10 s with 4,918 answers, then 0.30 core with 3,757: 75 ms / 8,675 per request.
    assert cpu_ms_per_request([(0.45, 4918), (0.30, 3757)], 10) == 0.86
    assert cpu_ms_per_request([(0.3, 0)], 10) is None
