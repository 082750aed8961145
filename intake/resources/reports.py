"""GET /v1/reports/daily, /weekly and /monthly: the merchant's own rows, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

from sqlalchemy import Engine

from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import parse
from shared.db.uow import UnitOfWork
from shared.domain import report_periods
from shared.domain.intent import Status
from shared.domain.validation import ValidationError
from shared.services import period_reports, reports, views
from shared.services.errors import NotFound

COUNTS = [f"count_{s.value}" for s in Status]
MONEY = ["gross", "fees", "refunds", "net", "settled"]
CSV_HEADER = ["date", "currency", *COUNTS, *MONEY]
# A period's rows, and what a spreadsheet needs to know of the period on each.
PERIOD_TAIL = ["days", "days_reported", "complete", "reconciliation"]


def period_csv_header(kind: str) -> list[str]:
    """The CSV columns of a weekly (``week``) or monthly (``month``) report."""
    return [kind, "first_day", "last_day", "currency", *COUNTS, *MONEY, *PERIOD_TAIL]


def only_param(params: dict, name: str, form: str) -> str:
    """The one required parameter ``name`` (unknown or repeated parameters are errors)."""
    for key, value in params.items():
        if key != name:
            raise ValidationError(key, f"Received unknown parameter: {key}", "parameter_unknown")
        if not isinstance(value, str):
            raise ValidationError(key, f"`{key}` may be given only once.")
    raw = params.get(name)
    if not raw:
        raise ValidationError(name, f"`{name}` is required ({form}).", "parameter_missing")
    return raw


def report_date(params: dict) -> date:
    """The one required ``date`` parameter."""
    raw = only_param(params, "date", "YYYY-MM-DD")
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationError("date", "`date` must be a date as YYYY-MM-DD.") from None


def report_week(params: dict) -> report_periods.Period:
    """The one required ``week`` parameter (YYYY-Www)."""
    return report_periods.week(only_param(params, "week", "YYYY-Www"))


def report_month(params: dict) -> report_periods.Period:
    """The one required ``month`` parameter (YYYY-MM)."""
    return report_periods.month(only_param(params, "month", "YYYY-MM"))


def _rows(figures: list[dict], lead) -> list[list]:
    return [
        [*lead(r), r["currency"], *(r["counts"][s.value] for s in Status), *(r[k] for k in MONEY)]
        for r in figures
    ]


def _table(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def to_csv(rows: list[dict]) -> str:
    """Daily report rows (as report_row_json gives them) as CSV, one column per count."""
    return _table(CSV_HEADER, _rows(rows, lambda r: [r["date"]]))


def period_to_csv(report: dict) -> str:
    """A weekly or monthly report (as period_report_json gives it) as CSV, one row per currency."""
    kind = "week" if "week" in report else "month"
    lead = [report[kind], report["first_day"], report["last_day"]]
    tail = [
        report["days"],
        report["days_reported"],
        str(report["complete"]).lower(),
        report["reconciliation"]["status"],
    ]
    rows = [[*row, *tail] for row in _rows(report["data"], lambda r: lead)]
    return _table(period_csv_header(kind), rows)


def _wants_csv(req) -> bool:
    # JSON unless the client prefers CSV (`*/*` and no Accept mean JSON).
    return req.client_prefers(["application/json", "text/csv"]) == "text/csv"


def _answer_csv(resp, filename: str, body: str) -> None:
    resp.content_type = "text/csv; charset=utf-8"
    resp.downloadable_as = filename
    resp.text = body


class Daily:
    auth_required = True
    operations = {
        "GET": Operation(
            "retrieveDailyReport",
            "reports",
            "Daily report (JSON, or CSV with Accept: text/csv)",
            200,
            rs.DailyReport,
            query=rq.ReportQuery,
            csv=True,
            scope="reports:read",
        )
    }

    def __init__(self, engine: Engine):
        self._engine = engine

    def on_get(self, req, resp) -> None:
        day = parse(rq.ReportQuery, req.params, report_date, "The query")
        with UnitOfWork(self._engine) as uow:
            rows = reports.merchant_rows(uow, req.context.merchant_id, day)
        if rows is None:
            raise NotFound("daily report", day.isoformat(), "date")
        data = [views.report_row_json(r) for r in rows]
        if _wants_csv(req):
            _answer_csv(resp, f"daily-report-{day.isoformat()}.csv", to_csv(data))
            return
        resp.media = {
            "object": "list",
            "data": data,
            "has_more": False,
            "url": "/v1/reports/daily",
        }


PERIOD_400 = (
    "The request does not match this schema, or a rule it cannot state refused it: a week"
    " its year does not have (W53 of a 52-week year), a period that has not begun (UTC);"
    " the Problem's `code` says which and `param` names the field."
)
PERIOD_404 = "No day of the period has a daily report yet."


class _Period:
    """A weekly or monthly report: the sums of the period's stored daily reports."""

    auth_required = True
    kind: str  # the query parameter, and the period's key in the body
    name: str  # "weekly": the route, the row objects, the CSV file
    query: type
    read: staticmethod

    def __init__(self, engine: Engine):
        self._engine = engine

    def on_get(self, req, resp) -> None:
        period = parse(self.query, req.params, self.read, "The query")
        report_periods.require_begun(period, datetime.now(UTC).date())
        with UnitOfWork(self._engine) as uow:
            found = period_reports.summarize(uow, req.context.merchant_id, period)
        if found is None:
            raise NotFound(f"{self.name} report", period.label, self.kind)
        body = views.period_report_json(found, f"/v1/reports/{self.name}")
        if _wants_csv(req):
            _answer_csv(resp, f"{self.name}-report-{period.label}.csv", period_to_csv(body))
            return
        resp.media = body


def _period_operation(op_id: str, name: str, response, query) -> Operation:
    return Operation(
        op_id,
        "reports",
        f"{name.capitalize()} report: the sum of its days' daily reports (JSON, or CSV with"
        " Accept: text/csv)",
        200,
        response,
        query=query,
        csv=True,
        scope="reports:read",
        errors={400: PERIOD_400, 404: PERIOD_404},
    )


class Weekly(_Period):
    kind, name = "week", "weekly"
    query = rq.WeeklyReportQuery
    read = staticmethod(report_week)
    operations = {"GET": _period_operation("retrieveWeeklyReport", name, rs.WeeklyReport, query)}


class Monthly(_Period):
    kind, name = "month", "monthly"
    query = rq.MonthlyReportQuery
    read = staticmethod(report_month)
    operations = {"GET": _period_operation("retrieveMonthlyReport", name, rs.MonthlyReport, query)}
