"""``GET /v1/operator/audit``: the audit trail, newest first (viewer)."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.listing import list_object, list_query
from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import parse
from shared.db.uow import UnitOfWork
from shared.services import operator_payments as service


def _query(params: dict) -> dict:
    return list_query({"limit": "50", **params}, dict.fromkeys(("actor", "action", "target")))


class Audit:
    operator_role = "viewer"
    operations = {
        "GET": Operation(
            "operatorListAudit",
            "operator",
            "The audit trail (operator and CLI acts, logins), newest first",
            200,
            rs.AuditList,
            query=rq.AuditQuery,
            role="viewer",
        )
    }

    def __init__(self, engine: Engine):
        self._engine = engine

    def on_get(self, req, resp) -> None:
        query = parse(rq.AuditQuery, req.params, _query, "The query")
        with UnitOfWork(self._engine) as uow:
            data, has_more = service.list_audit(uow, **query)
        resp.media = list_object(data, has_more, "/v1/operator/audit")
