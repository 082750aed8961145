"""``/v1/operator/...`` for payments: search and read intents, refund, redeliver.

Thin: parse, call ``shared.services.operator_payments`` in one unit of work,
answer. Acts run under the operator's own Idempotency-Key space
(``intake.idempotent``) and are audited as the operator (``actor_of``).
"""

from __future__ import annotations

from sqlalchemy import Engine

from intake.idempotent import IdempotentRunner
from intake.listing import list_object, list_query
from intake.openapi import Operation
from intake.resources.operator.actor import actor_of
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.db.uow import UnitOfWork
from shared.domain import operator_filters as filters
from shared.services import operator_payments as service

TAG = "operator"
INTENT_FILTERS = ("merchant", "status", "last4", "created_gte", "created_lte")


def intent_query(params: dict) -> dict:
    """The search's query: list_query's checks, then each filter's own."""
    query = list_query({"limit": "20", **params}, dict.fromkeys(INTENT_FILTERS))
    filters.status(query["status"])
    filters.last4(query["last4"])
    for name in ("created_gte", "created_lte"):
        filters.instant(query[name], name)
    return query


class _Base:
    def __init__(self, engine: Engine, runner: IdempotentRunner):
        self._engine = engine
        self._runner = runner


class Intents(_Base):
    operator_role = "viewer"
    operations = {
        "GET": Operation(
            "operatorSearchPaymentIntents",
            TAG,
            "Search every merchant's payment intents, newest first",
            200,
            rs.OperatorIntentList,
            query=rq.OperatorIntentQuery,
            role="viewer",
        )
    }

    def on_get(self, req, resp) -> None:
        query = parse(rq.OperatorIntentQuery, req.params, intent_query, "The query")
        with UnitOfWork(self._engine) as uow:
            data, has_more = service.search_intents(uow, **query)
        resp.media = list_object(data, has_more, "/v1/operator/payment_intents")


class Intent(_Base):
    operator_role = "viewer"
    operations = {
        "GET": Operation(
            "operatorRetrievePaymentIntent",
            TAG,
            "One payment intent with its events, webhook deliveries, refunds, ledger transfers",
            200,
            rs.OperatorPaymentIntent,
            query=rq.NoQuery,
            role="viewer",
        )
    }

    def on_get(self, req, resp, intent_id: str) -> None:
        parse(rq.NoQuery, req.params, closed(set()), "The query")
        with UnitOfWork(self._engine) as uow:
            resp.media = service.intent_detail(uow, intent_id)


class Refunds(_Base):
    operator_role = "support"
    operations = {
        "POST": Operation(
            "operatorCreateRefund",
            TAG,
            "Refund all or part of any merchant's succeeded intent, on its behalf",
            200,
            rs.Refund,
            body=rq.OperatorRefund,
            body_required=True,
            idempotent=True,
            role="support",
        )
    }

    def on_post(self, req, resp) -> None:
        body = parse(
            rq.OperatorRefund, req.context.body, closed({"payment_intent", "amount", "reason"})
        )
        actor = actor_of(req)

        def effect(uow: UnitOfWork):
            args = (body.get("payment_intent"), body.get("amount"), body.get("reason"))
            return 200, service.refund(uow, actor, *args)

        self._runner.run(req, resp, effect)


class Redeliver(_Base):
    operator_role = "support"
    operations = {
        "POST": Operation(
            "operatorRedeliverEvent",
            TAG,
            "Send any merchant's event to one of its webhook endpoints again (a new delivery)",
            202,
            rs.WebhookDelivery,
            body=rq.Redeliver,
            idempotent=True,
            role="support",
        )
    }

    def on_post(self, req, resp, event_id: str) -> None:
        body = parse(rq.Redeliver, req.context.body, closed({"endpoint"}))
        actor, endpoint = actor_of(req), body.get("endpoint")
        self._runner.run(
            req, resp, lambda uow: (202, service.redeliver(uow, actor, event_id, endpoint))
        )
