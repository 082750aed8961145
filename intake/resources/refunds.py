"""/v1/refunds: create (idempotent), retrieve, list."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.idempotent import IdempotentRunner
from intake.listing import list_object, list_query
from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import parse
from shared.db.uow import UnitOfWork
from shared.domain.refunds import validate_create
from shared.services import refunds, views


class _Base:
    auth_required = True

    def __init__(self, engine: Engine, runner: IdempotentRunner):
        self._engine = engine
        self._runner = runner


class Collection(_Base):
    operations = {
        "POST": Operation(
            "createRefund",
            "refunds",
            "Refund all or part of a succeeded payment intent",
            200,
            rs.Refund,
            body=rq.CreateRefund,
            body_required=True,
            idempotent=True,
            scope="refunds:write",
        ),
        "GET": Operation(
            "listRefunds",
            "refunds",
            "List refunds, newest first",
            200,
            rs.RefundList,
            query=rq.RefundQuery,
            scope="refunds:read",
        ),
    }

    def on_post(self, req, resp) -> None:
        # Validated before the idempotency key is claimed: a rejected body stores nothing.
        create = parse(rq.CreateRefund, req.context.body, validate_create)
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = refunds.create(uow, merchant_id, create, req.context.request_id)
            return 200, views.refund_json(row)

        self._runner.run(req, resp, effect)

    def on_get(self, req, resp) -> None:
        query = parse(
            rq.RefundQuery,
            req.params,
            lambda params: list_query(params, {"payment_intent": None}),
            "The query",
        )
        with UnitOfWork(self._engine) as uow:
            rows, has_more = refunds.list_(uow, req.context.merchant_id, **query)
        resp.media = list_object([views.refund_json(r) for r in rows], has_more, "/v1/refunds")


class Item(_Base):
    operations = {
        "GET": Operation(
            "retrieveRefund", "refunds", "Retrieve a refund", 200, rs.Refund, scope="refunds:read"
        )
    }

    def on_get(self, req, resp, refund_id: str) -> None:
        with UnitOfWork(self._engine) as uow:
            row = refunds.get(uow, req.context.merchant_id, refund_id)
        resp.media = views.refund_json(row)
