"""The arithmetic of the bench's long modes (tests/load/modes.py, tests/load/preload.py):
the backlog, overload and flat-cost figures, the shed answers' checks, the template's name."""

from collections import Counter
from datetime import date

from tests.load.bench import mode_name, shed_answer_checks
from tests.load.modes import backlog_figures, every, overload_figures
from tests.load.preload import first_day, flat_cost, template_name


def _phase(completed: float, p99: float | None, shed: float = 0.0, answers=None) -> dict:
    return {
        "offered_rate": 100,
        "accepted_per_s": completed,
        "completed_per_s": completed,
        "shed_per_s": shed,
        "accept_latency_ms": None if p99 is None else {"p50": 1.0, "p95": p99, "p99": p99},
        "backlog_at_window_end": 0,
        "shed_answers": answers or {},
    }


def test_backlog_figures_time_the_drain_and_take_instant_percentiles():
    fig = backlog_figures(50_000, 12.34, 1000.0, 1250.56, 0, [(100.0, 0)] * 99 + [(900.0, 0)], None)
    assert fig["economy_intents"] == 50_000
    assert (fig["inserted_s"], fig["drained_in_s"]) == (12.3, 250.6)
    assert fig["instant_e2e_while_draining_ms"]["p99"] == 108.0
    assert fig["instant_intents_while_draining"] == 100
    # No half-load figure: the target cannot be called met.
    assert fig["target"]["met"] is False
    met = backlog_figures(10, 1, 0, 5, 0, [(200.0, 0)], {"p50": 50.0, "p95": 90.0, "p99": 240.0})
    assert met["target"]["met"] is True
    slow_half = backlog_figures(10, 1, 0, 5, 0, [(200.0, 0)], {"p99": 260.0})
    assert slow_half["target"]["met"] is False


def test_first_attempt_figures_leave_out_retried_intents_but_the_target_keeps_them():
    retried = [(100.0, 0)] * 98 + [(1800.0, 2)] * 2
    fig = backlog_figures(10, 1, 0, 5, 0, retried, {"p99": 240.0}, {"p99": 200.0})
    assert fig["instant_e2e_first_attempt_while_draining_ms"]["p99"] == 100.0
    assert fig["instant_e2e_while_draining_ms"]["p99"] > 1000
    assert fig["instant_e2e_first_attempt_half_load_ms"] == {"p99": 200.0}
    assert fig["target"]["met"] is False


def test_an_undrained_backlog_has_no_drain_time():
    fig = backlog_figures(10, 1, 0, None, 4, [], {"p99": 10.0})
    assert fig["drained_in_s"] is None and fig["unfinished_after_drain"] == 4
    assert fig["instant_e2e_while_draining_ms"] is None
    assert fig["target"]["met"] is False


def test_every_is_none_without_answers_and_exact_otherwise():
    assert every({}, 503, "retry_after") is None
    assert every({"shed_503": 3, "shed_503_retry_after": 3}, 503, "retry_after") is True
    assert every({"shed_503": 3, "shed_503_retry_after": 2}, 503, "retry_after") is False


def test_overload_figures_compare_twice_the_load_with_saturation():
    answers = {"shed_503": 10, "shed_503_retry_after": 10, "shed_503_problem_json": 10}
    fig = overload_figures(200, _phase(195, 40.0), _phase(185, 70.0, 190.0, answers))
    assert (fig["saturation_rate"], fig["double_rate"], fig["shed_per_s"]) == (200, 400, 190.0)
    assert fig["completed_double_vs_saturation"] == 0.949
    assert fig["accept_p99_double_vs_saturation"] == 1.75
    assert fig["every_503_has_retry_after"] and fig["every_503_is_problem_json"]
    assert fig["every_429_has_retry_after"] is None
    assert fig["target"]["met"] is True


def test_overload_targets_fail_on_collapse_latency_or_a_bare_503():
    assert not overload_figures(200, _phase(195, 40), _phase(150, 50))["target"]["met"]
    assert not overload_figures(200, _phase(195, 40), _phase(190, 90))["target"]["met"]
    bare = {"shed_503": 2, "shed_503_retry_after": 1, "shed_503_problem_json": 2}
    assert not overload_figures(200, _phase(195, 40), _phase(190, 50, 1, bare))["target"]["met"]
    assert not overload_figures(200, _phase(0, None), _phase(0, None))["target"]["met"]


class _Resp:
    def __init__(self, headers: dict):
        self._h = headers

    def getheader(self, name, default=None):
        return self._h.get(name, default)


def test_shed_answer_checks_look_for_retry_after_and_a_whole_problem():
    body = b'{"type": "about:blank", "title": "t", "status": 503, "detail": "d"}'
    good = _Resp({"Content-Type": "application/problem+json", "Retry-After": "1"})
    assert shed_answer_checks(503, good, body) == Counter(
        shed_503=1, shed_503_retry_after=1, shed_503_problem_json=1
    )
    plain = _Resp({"Content-Type": "text/html"})
    assert shed_answer_checks(429, plain, b"<html>") == Counter(
        shed_429=1, shed_429_retry_after=0, shed_429_problem_json=0
    )
    # problem+json that lacks a member is not one.
    short = _Resp({"Content-Type": "application/problem+json", "Retry-After": "2"})
    assert shed_answer_checks(503, short, b'{"title": "t"}')["shed_503_problem_json"] == 0


def test_the_template_is_named_by_size_and_migration_head():
    assert template_name(10_000_000, "0021") == "clearhouse_bench_tpl_10000000_0021_g2"
    assert template_name(10, "0021") != template_name(10, "0020")
    assert len(template_name(10_000_000, "0021")) < 63  # Postgres' identifier limit


def test_the_preload_ends_before_today_in_whole_days():
    today = date(2026, 12, 3)
    assert first_day(1_000_000, 1_000_000, today) == date(2026, 12, 2)
    assert first_day(10_000_000, 1_000_000, today) == date(2026, 11, 23)
    assert first_day(200_000, 1_000_000, today) == date(2026, 12, 2)


def test_flat_cost_is_the_median_ratio():
    empty = [{"completed_per_s": 100.0}, {"completed_per_s": 110.0}, {"completed_per_s": 90.0}]
    pre = [{"completed_per_s": 95.0}, {"completed_per_s": 80.0}, {"completed_per_s": 99.0}]
    fig = flat_cost(empty, pre)
    assert (fig["completed_per_s_empty"], fig["completed_per_s_preloaded"]) == (100.0, 95.0)
    assert fig["preloaded_vs_empty"] == 0.95 and fig["met"] is True
    assert flat_cost(empty, [{"completed_per_s": 80.0}])["met"] is False
    assert flat_cost([], [])["preloaded_vs_empty"] is None


def test_mode_names():
    base = {"backlog_economy": 0, "overload": False, "preload": 0}
    assert mode_name(base) == "steady"
    assert mode_name({**base, "overload": True, "preload": 5}) == "overload, preload=5"
    assert mode_name({**base, "backlog_economy": 50}) == "backlog_economy=50"
