"""GET /v1/reports/daily?date=YYYY-MM-DD: the merchant's own rows, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import date

from sqlalchemy import Engine

from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import parse
from shared.db.uow import UnitOfWork
from shared.domain.intent import Status
from shared.domain.validation import ValidationError
from shared.services import reports, views
from shared.services.errors import NotFound

CSV_HEADER = [
    "date",
    "currency",
    *(f"count_{s.value}" for s in Status),
    "gross",
    "fees",
    "refunds",
    "net",
    "settled",
]


def report_date(params: dict) -> date:
    """The one required ``date`` parameter (unknown or repeated parameters are errors)."""
    for name, value in params.items():
        if name != "date":
            raise ValidationError(name, f"Received unknown parameter: {name}", "parameter_unknown")
        if not isinstance(value, str):
            raise ValidationError(name, "`date` may be given only once.")
    raw = params.get("date")
    if not raw:
        raise ValidationError("date", "`date` is required (YYYY-MM-DD).", "parameter_missing")
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationError("date", "`date` must be a date as YYYY-MM-DD.") from None


def to_csv(rows: list[dict]) -> str:
    """Report rows (as report_row_json gives them) as CSV, one column per count."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        counts = [r["counts"][s.value] for s in Status]
        money = [r[k] for k in ("gross", "fees", "refunds", "net", "settled")]
        writer.writerow([r["date"], r["currency"], *counts, *money])
    return out.getvalue()


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
        # JSON unless the client prefers CSV (`*/*` and no Accept mean JSON).
        if req.client_prefers(["application/json", "text/csv"]) == "text/csv":
            resp.content_type = "text/csv; charset=utf-8"
            resp.downloadable_as = f"daily-report-{day.isoformat()}.csv"
            resp.text = to_csv(data)
            return
        resp.media = {
            "object": "list",
            "data": data,
            "has_more": False,
            "url": "/v1/reports/daily",
        }
