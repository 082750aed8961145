"""The chaos suite's own judgement: which HTTP answers breach, and its seeded schedule."""

from __future__ import annotations

from types import SimpleNamespace

from tests.chaos import faults
from tests.chaos.audit import http_errors
from tests.chaos.load import Answer


def _fault(name, started, ended):
    return faults.Fault(name, 0, started=started, ended=ended)


def test_503_inside_the_postgres_outage_is_allowed_even_when_faults_overlap():
    plan = [_fault("webhook_503", 100, 130), _fault("postgres_restart", 110, 116)]
    load = SimpleNamespace(answers=[Answer(112, 503, "service_unavailable"), Answer(111, None)])
    by_fault, breaches = http_errors(load, plan)
    assert breaches == []
    assert by_fault == {"postgres_restart": {"503": 1, "connection:None": 1}}


def test_any_500_or_a_5xx_outside_the_outage_breaches():
    plan = [_fault("postgres_restart", 110, 116), _fault("kill:relay", 200, 201)]
    load = SimpleNamespace(
        answers=[Answer(112, 500, "internal_error"), Answer(150, 503), Answer(200.5, 502)]
    )
    _, breaches = http_errors(load, plan)
    assert len(breaches) == 3


def test_a_seed_replays_the_same_schedule():
    a = faults.schedule(42, faults.ALL, 10, (25, 40))
    b = faults.schedule(42, faults.ALL, 10, (25, 40))
    assert [(f.name, f.at_s) for f in a] == [(f.name, f.at_s) for f in b]
    assert sorted(f.name for f in a) == sorted(faults.ALL)
    assert [f.name for f in faults.schedule(43, faults.ALL, 10, (25, 40))] != [f.name for f in a]
