"""``/v1/operator/operators...``: operator accounts, for admins only.

Creating one answers its one-time enrolment (as ``clearhouse operator create
--json``); disabling one refuses its tokens at once. Each is audited in its
transaction, as the operator who asked, with the request id and source IP.
"""

from __future__ import annotations

from sqlalchemy import Engine

from intake.headers import no_store
from intake.listing import list_object
from intake.openapi import Operation
from intake.resources.operator.actor import actor_of
from intake.resources.operator.admin import TAG, AdminResource, fields_check
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.config import Settings
from shared.services import operator_accounts, operators


class Operators(AdminResource):
    operations = {
        "GET": Operation(
            "listOperators",
            TAG,
            "Every operator account, oldest first",
            200,
            rs.OperatorAccountList,
            query=rq.NoQuery,
            role="admin",
        ),
        "POST": Operation(
            "createOperator",
            TAG,
            "A new operator: its one-time enrolment (TOTP URI, temporary password)",
            200,
            rs.OperatorEnrolment,
            body=rq.OperatorCreateOperator,
            body_required=True,
            role="admin",
        ),
    }

    def on_get(self, req, resp) -> None:
        parse(rq.NoQuery, req.params, closed(set()), "The query")
        with self._new_uow() as uow:
            rows = operator_accounts.list_operators(uow)
        resp.media = list_object(rows, False, "/v1/operator/operators")

    def on_post(self, req, resp) -> None:
        body = parse(
            rq.OperatorCreateOperator,
            req.context.body,
            fields_check({"email", "role"}, ("email", "role")),
        )
        no_store(resp)
        resp.media = self._run(
            lambda uow: operators.create_operator(
                uow, self._vault, body["email"], body["role"], actor_of(req)
            )
        )


class DisableOperator(AdminResource):
    operations = {
        "POST": Operation(
            "disableOperator",
            TAG,
            "Refuse an operator from now on (its tokens too)",
            200,
            rs.OperatorAccount,
            body=rq.OperatorDisableOperator,
            role="admin",
        )
    }

    def on_post(self, req, resp, operator_id: str) -> None:
        parse(rq.OperatorDisableOperator, req.context.body, closed(set()))
        resp.media = self._run(
            lambda uow: operator_accounts.disable(uow, actor_of(req), operator_id)
        )


def routes(engine: Engine, vault, settings: Settings) -> list[tuple[str, object]]:
    """The routes of this module, for intake/app.py."""
    deps = (engine, vault, settings)
    return [
        ("/v1/operator/operators", Operators(*deps)),
        ("/v1/operator/operators/{operator_id}/disable", DisableOperator(*deps)),
    ]
