"""``POST /v1/operator/reports/daily``: rebuild one day's report (admin), audited."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.openapi import Operation
from intake.resources.operator.actor import actor_of
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.db.uow import UnitOfWork, transact
from shared.services import operator_payments as service


class DailyRerun:
    operator_role = "admin"
    operations = {
        "POST": Operation(
            "operatorRerunDailyReport",
            "operator",
            "Rebuild, reconcile and seal one UTC day's report (as the nightly job does)",
            200,
            rs.DailyReportRun,
            body=rq.DailyReportRerun,
            body_required=True,
            role="admin",
        )
    }

    def __init__(self, engine: Engine):
        self._engine = engine

    def on_post(self, req, resp) -> None:
        body = parse(rq.DailyReportRerun, req.context.body, closed({"date"}))
        resp.media = transact(
            lambda: UnitOfWork(self._engine),
            service.rerun_daily_report,
            actor_of(req),
            body.get("date"),
        )
