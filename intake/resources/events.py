"""/v1/events and /v1/webhook_deliveries: the event log and webhook delivery outcomes."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.idempotent import IdempotentRunner
from intake.listing import list_object, list_query
from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.db.uow import UnitOfWork
from shared.services import event_log, views
from shared.services.events import EVENT_TYPES


class _Base:
    auth_required = True

    def __init__(self, engine: Engine, runner: IdempotentRunner | None = None):
        self._engine = engine
        self._runner = runner


class Events(_Base):
    operations = {
        "GET": Operation(
            "listEvents",
            "events",
            "List events, newest first",
            200,
            rs.EventList,
            query=rq.EventQuery,
            scope="events:read",
        )
    }

    def on_get(self, req, resp) -> None:
        query = parse(
            rq.EventQuery,
            req.params,
            lambda params: list_query(params, {"type": EVENT_TYPES}),
            "The query",
        )
        with UnitOfWork(self._engine) as uow:
            rows, has_more = event_log.list_events(uow, req.context.merchant_id, **query)
        resp.media = list_object([views.event_json(r) for r in rows], has_more, "/v1/events")


class Event(_Base):
    operations = {
        "GET": Operation(
            "retrieveEvent",
            "events",
            "Retrieve an event",
            200,
            rs.Event,
            query=rq.NoQuery,
            scope="events:read",
        )
    }

    def on_get(self, req, resp, event_id: str) -> None:
        parse(rq.NoQuery, req.params, closed(set()), "The query")
        with UnitOfWork(self._engine) as uow:
            row = event_log.get_event(uow, req.context.merchant_id, event_id)
        resp.media = views.event_json(row)


class Redeliver(_Base):
    operations = {
        "POST": Operation(
            "redeliverEvent",
            "events",
            "Send an event's webhook again (a new delivery to one endpoint)",
            202,
            rs.WebhookDelivery,
            body=rq.Redeliver,
            idempotent=True,
            scope="events:write",
        )
    }

    def on_post(self, req, resp, event_id: str) -> None:
        body = parse(rq.Redeliver, req.context.body, closed({"endpoint"}))
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = event_log.redeliver(uow, merchant_id, event_id, body.get("endpoint"))
            return 202, views.delivery_json(row)

        self._runner.run(req, resp, effect)


class Deliveries(_Base):
    operations = {
        "GET": Operation(
            "listWebhookDeliveries",
            "webhook_deliveries",
            "List webhook deliveries and their attempts",
            200,
            rs.WebhookDeliveryList,
            query=rq.DeliveryQuery,
            scope="events:read",
        )
    }

    def on_get(self, req, resp) -> None:
        filters = {"event_id": None, "endpoint": None, "status": event_log.DELIVERY_STATUSES}
        query = parse(
            rq.DeliveryQuery, req.params, lambda params: list_query(params, filters), "The query"
        )
        with UnitOfWork(self._engine) as uow:
            rows, attempts, has_more = event_log.list_deliveries(
                uow, req.context.merchant_id, **query
            )
        data = [views.delivery_json(r, attempts[r.id]) for r in rows]
        resp.media = list_object(data, has_more, "/v1/webhook_deliveries")
