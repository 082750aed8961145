"""Weekly and monthly report periods: the UTC days they cover, and how much of them is known.

A period's figures are the sum of its stored daily reports, so a period is only
as complete as its days: every day without a report is named, and so is every
day whose report was built before the day ended (the CLI or an operator can
build one for a day still running; it holds what had happened by then).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from shared.domain.validation import ValidationError

WEEK = "week"
MONTH = "month"
# ISO 8601 week dates (Monday to Sunday) and calendar months, as the query gives them.
_WEEK_TEXT = re.compile(r"([0-9]{4})-W([0-9]{2})")
_MONTH_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})")

BALANCED = "balanced"
DISCREPANCIES = "discrepancies"
INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Period:
    kind: str  # WEEK or MONTH: also the query parameter that names it
    label: str  # "2026-W48", "2026-11"
    first_day: date
    last_day: date

    @property
    def days(self) -> list[date]:
        """Every UTC day of the period, in order."""
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=n) for n in range(count)]


def week(raw: str) -> Period:
    """The ISO week ``YYYY-Www`` (Monday to Sunday); ValidationError for any other text."""
    found = _WEEK_TEXT.fullmatch(raw)
    if found is None:
        raise ValidationError(WEEK, "`week` must be an ISO week as YYYY-Www (say 2026-W48).")
    year, number = int(found[1]), int(found[2])
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        weeks = _weeks_in(year)
        have = f"{year} has {weeks} ISO weeks" if weeks else "years start at 0001"
        raise ValidationError(WEEK, f"`week` {raw} does not exist: {have}.") from None
    return Period(WEEK, raw, monday, monday + timedelta(days=6))


def month(raw: str) -> Period:
    """The calendar month ``YYYY-MM``; ValidationError for any other text."""
    found = _MONTH_TEXT.fullmatch(raw)
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1:
        raise ValidationError(MONTH, "`month` must be a month as YYYY-MM (say 2026-11).")
    year, number = int(found[1]), int(found[2])
    last = calendar.monthrange(year, number)[1]
    return Period(MONTH, raw, date(year, number, 1), date(year, number, last))


def _weeks_in(year: int) -> int:
    # 28 December is always in the last ISO week of its year.
    return date(year, 12, 28).isocalendar()[1] if year >= 1 else 0


def require_begun(period: Period, today: date) -> Period:
    """``period`` if its first day is ``today`` or earlier: nothing can be reported before."""
    if period.first_day > today:
        raise ValidationError(
            period.kind,
            f"`{period.kind}` {period.label} has not begun (it starts on"
            f" {period.first_day.isoformat()}; today is {today.isoformat()} UTC).",
        )
    return period


@dataclass(frozen=True)
class DayRun:
    """What the period needs of one stored daily report run."""

    day: date
    discrepancies: int  # reconciliation findings of that run (0: the books balanced)
    built_at: datetime  # when that run's transaction began


@dataclass(frozen=True)
class Coverage:
    days_reported: int
    days_missing: list[date]
    days_provisional: list[date]
    days_with_discrepancies: list[date]

    @property
    def complete(self) -> bool:
        """Every day of the period has a report built after the day ended."""
        return not self.days_missing and not self.days_provisional

    @property
    def reconciliation(self) -> str:
        """``discrepancies`` if any day's run found one, else ``incomplete`` or ``balanced``."""
        if self.days_with_discrepancies:
            return DISCREPANCIES
        return BALANCED if self.complete else INCOMPLETE


def coverage(period: Period, runs: Iterable[DayRun]) -> Coverage:
    """Which days of ``period`` are reported, final, and balanced, from their runs."""
    by_day = {r.day: r for r in runs if period.first_day <= r.day <= period.last_day}
    missing = [d for d in period.days if d not in by_day]
    reported = sorted(by_day.values(), key=lambda r: r.day)
    return Coverage(
        days_reported=len(reported),
        days_missing=missing,
        # Built on the day itself (UTC) or earlier: before the day ended.
        days_provisional=[r.day for r in reported if r.built_at.astimezone(UTC).date() <= r.day],
        days_with_discrepancies=[r.day for r in reported if r.discrepancies > 0],
    )
