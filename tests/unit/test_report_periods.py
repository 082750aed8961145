"""Report periods: ISO weeks and months as UTC days, and how much of a period is reported."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain import report_periods as rp
from shared.domain.validation import ValidationError

days = st.dates(date(1, 1, 1), date(9999, 11, 30))  # (the last month must end before 10000)


def _refused(read, raw: str, param: str) -> str:
    with pytest.raises(ValidationError) as exc:
        read(raw)
    assert (exc.value.param, exc.value.code) == (param, "parameter_invalid")
    return exc.value.message


@pytest.mark.parametrize(
    ("raw", "first", "last"),
    [
        ("2026-W48", date(2026, 11, 23), date(2026, 11, 29)),
        ("2026-W01", date(2025, 12, 29), date(2026, 1, 4)),  # across a year's end
        ("2020-W53", date(2020, 12, 28), date(2021, 1, 3)),  # a 53-week year
        ("2026-W53", date(2026, 12, 28), date(2027, 1, 3)),
        ("0001-W01", date(1, 1, 1), date(1, 1, 7)),
    ],
)
def test_a_week_is_monday_to_sunday(raw, first, last):
    period = rp.week(raw)
    assert period == rp.Period("week", raw, first, last)
    assert period.days == [first + timedelta(days=n) for n in range(7)]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("2025-W53", "2025 has 52 ISO weeks"),
        ("2026-W54", "2026 has 53 ISO weeks"),
        ("2026-W00", "2026 has 53 ISO weeks"),
        ("0000-W01", "years start at 0001"),
    ],
)
def test_a_week_its_year_does_not_have_is_refused(raw, why):
    assert _refused(rp.week, raw, "week") == f"`week` {raw} does not exist: {why}."


@pytest.mark.parametrize(
    "raw", ["", "2026-W4", "2026-w48", "2026W48", "2026-48", " 2026-W48", "2026-W48\n", "٢٠٢٦-W48"]
)
def test_a_week_in_another_form_is_refused(raw):
    assert "YYYY-Www" in _refused(rp.week, raw, "week")


@pytest.mark.parametrize(
    ("raw", "first", "last"),
    [
        ("2026-11", date(2026, 11, 1), date(2026, 11, 30)),
        ("2024-02", date(2024, 2, 1), date(2024, 2, 29)),
        ("2026-02", date(2026, 2, 1), date(2026, 2, 28)),
        ("2026-12", date(2026, 12, 1), date(2026, 12, 31)),
        ("0001-01", date(1, 1, 1), date(1, 1, 31)),
    ],
)
def test_a_month_is_its_calendar_days(raw, first, last):
    period = rp.month(raw)
    assert period == rp.Period("month", raw, first, last)
    assert len(period.days) == (last - first).days + 1


@pytest.mark.parametrize(
    "raw", ["2026-13", "2026-00", "0000-01", "2026-1", "2026/11", "202611", ""]
)
def test_a_month_in_another_form_is_refused(raw):
    assert "YYYY-MM" in _refused(rp.month, raw, "month")


@given(days)
def test_every_day_is_in_its_week_and_its_month(day):
    iso = day.isocalendar()
    week = rp.week(f"{iso.year:04d}-W{iso.week:02d}")
    assert week.first_day.isoweekday() == 1 and week.last_day.isoweekday() == 7
    assert day in week.days and len(week.days) == 7
    month = rp.month(f"{day.year:04d}-{day.month:02d}")
    assert month.first_day == day.replace(day=1) and day in month.days
    assert (month.last_day + timedelta(days=1)).day == 1
    assert month.days == sorted(set(month.days)) and 28 <= len(month.days) <= 31


def test_a_period_that_has_not_begun_is_refused():
    week = rp.week("2026-W49")  # from Monday 2026-11-30
    assert rp.require_begun(week, date(2026, 11, 30)) is week
    with pytest.raises(ValidationError) as exc:
        rp.require_begun(week, date(2026, 11, 29))
    assert (exc.value.param, exc.value.code) == ("week", "parameter_invalid")
    assert exc.value.message == (
        "`week` 2026-W49 has not begun (it starts on 2026-11-30; today is 2026-11-29 UTC)."
    )
    month = rp.month("2026-12")
    assert rp.require_begun(month, date(2026, 12, 1)) is month
    with pytest.raises(ValidationError) as exc:
        rp.require_begun(month, date(2026, 11, 30))
    assert exc.value.param == "month"


WEEK = rp.week("2026-W48")  # 2026-11-23 .. 2026-11-29


def run(day: int, found: int = 0, built: datetime | None = None) -> rp.DayRun:
    """A run for 2026-11-<day>, built just after the day ended unless ``built`` says."""
    at = date(2026, 11, day)
    built = built or datetime(2026, 11, day, tzinfo=UTC) + timedelta(days=1, minutes=5)
    return rp.DayRun(at, found, built)


def test_every_day_reported_after_its_end_and_balanced_is_complete_and_balanced():
    cov = rp.coverage(WEEK, [run(d) for d in range(29, 22, -1)])  # any order
    assert cov == rp.Coverage(7, [], [], [])
    assert cov.complete and cov.reconciliation == "balanced"


def test_missing_days_are_named_and_leave_the_period_incomplete():
    cov = rp.coverage(WEEK, [run(23), run(25), run(29)])
    assert cov.days_reported == 3
    assert cov.days_missing == [date(2026, 11, d) for d in (24, 26, 27, 28)]
    assert not cov.complete and cov.reconciliation == "incomplete"


def test_a_day_reported_before_it_ended_is_provisional():
    end = datetime(2026, 11, 25, tzinfo=UTC)  # the end of the 24th
    just_before = [run(d) for d in range(23, 30) if d != 24] + [
        run(24, built=end - timedelta(microseconds=1))
    ]
    cov = rp.coverage(WEEK, just_before)
    assert cov.days_provisional == [date(2026, 11, 24)] and cov.days_missing == []
    assert not cov.complete and cov.reconciliation == "incomplete"
    at_the_end = [run(d) for d in range(23, 30) if d != 24] + [run(24, built=end)]
    assert rp.coverage(WEEK, at_the_end).complete
    # The moment counts in UTC: 01:00 at +02:00 on the 25th is still the 24th.
    east = datetime(2026, 11, 25, 1, tzinfo=timezone(timedelta(hours=2)))
    late = [run(d) for d in range(23, 30) if d != 24] + [run(24, built=east)]
    assert rp.coverage(WEEK, late).days_provisional == [date(2026, 11, 24)]


def test_any_day_with_findings_makes_the_period_unbalanced_complete_or_not():
    cov = rp.coverage(WEEK, [run(d, found=1 if d in (27, 24) else 0) for d in range(23, 30)])
    assert cov.days_with_discrepancies == [date(2026, 11, 24), date(2026, 11, 27)]
    assert cov.complete and cov.reconciliation == "discrepancies"
    partial = rp.coverage(WEEK, [run(23), run(26, found=3)])
    assert not partial.complete and partial.reconciliation == "discrepancies"


def test_runs_outside_the_period_are_not_its_days():
    cov = rp.coverage(WEEK, [run(22, found=1), run(23), run(30, found=2)])
    assert (cov.days_reported, cov.days_with_discrepancies) == (1, [])
    assert len(cov.days_missing) == 6
