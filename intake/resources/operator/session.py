"""``/v1/operator/me``: who the operator token is for."""

from __future__ import annotations

from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse


class Me:
    operator_role = "viewer"
    operations = {
        "GET": Operation(
            "retrieveOperatorSelf",
            "operator",
            "The operator the token is for",
            200,
            rs.OperatorSelf,
            query=rq.NoQuery,
            role="viewer",
        )
    }

    def on_get(self, req, resp) -> None:
        parse(rq.NoQuery, req.params, closed(set()), "The query")
        who = req.context.operator
        resp.media = {"object": "operator", "id": who.id, "email": who.email, "role": who.role}
