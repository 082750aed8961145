"""/v1/webhook_endpoints: a merchant's webhook endpoints (Stripe's WebhookEndpoint API).

Create and rotate_secret answer the endpoint with its ``secret``, the only
times it is shown: a replay under the same Idempotency-Key answers the same
endpoint with ``secret`` null (the stored answer never holds a secret).
"""

from __future__ import annotations

from sqlalchemy import Engine

from intake.idempotent import IdempotentRunner
from intake.listing import list_object, list_query
from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.config import Settings
from shared.db.uow import UnitOfWork, transact
from shared.domain import merchant_admin as rules
from shared.domain import webhook_endpoints as rules_we
from shared.services import views
from shared.services import webhook_endpoints as endpoints
from shared.services.events import EVENT_TYPES

TAG = "webhook_endpoints"
READ, WRITE = "webhook_endpoints:read", "webhook_endpoints:write"


def _without_secret(body: dict) -> dict:
    return {**body, "secret": None}


def _overlap(body: object) -> float | None:
    return rules.overlap_hours(closed({"overlap_hours"})(body).get("overlap_hours"))


class _Base:
    auth_required = True

    def __init__(self, engine: Engine, vault, settings: Settings, runner: IdempotentRunner):
        self._engine = engine
        self._vault = vault
        self._settings = settings
        self._runner = runner

    def _new_uow(self) -> UnitOfWork:
        return UnitOfWork(self._engine)


class Collection(_Base):
    operations = {
        "POST": Operation(
            "createWebhookEndpoint",
            TAG,
            "Create a webhook endpoint (its secret is shown only in this answer)",
            200,
            rs.WebhookEndpoint,
            body=rq.CreateWebhookEndpoint,
            body_required=True,
            idempotent=True,
            scope=WRITE,
        ),
        "GET": Operation(
            "listWebhookEndpoints",
            TAG,
            "List webhook endpoints, newest first",
            200,
            rs.WebhookEndpointList,
            query=rq.Page,
            scope=READ,
        ),
    }

    def on_post(self, req, resp) -> None:
        # Validated before the idempotency key is claimed: a rejected body stores nothing.
        change = parse(
            rq.CreateWebhookEndpoint,
            req.context.body,
            lambda body: rules_we.validate_create(body, EVENT_TYPES),
        )
        merchant_id, allow = req.context.merchant_id, self._settings.webhook_allow_private

        def effect(uow: UnitOfWork):
            row, secret = endpoints.create(uow, self._vault, merchant_id, change, allow)
            return 200, views.endpoint_json(row, secret)

        resp.set_header("Cache-Control", "no-store")
        self._runner.run(req, resp, effect, keep=_without_secret)

    def on_get(self, req, resp) -> None:
        query = parse(rq.Page, req.params, lambda p: list_query(p, {}), "The query")
        with UnitOfWork(self._engine) as uow:
            rows, has_more = endpoints.list_(uow, req.context.merchant_id, **query)
        data = [views.endpoint_json(r) for r in rows]
        resp.media = list_object(data, has_more, "/v1/webhook_endpoints")


class Item(_Base):
    operations = {
        "GET": Operation(
            "retrieveWebhookEndpoint",
            TAG,
            "Retrieve a webhook endpoint",
            200,
            rs.WebhookEndpoint,
            query=rq.NoQuery,
            scope=READ,
        ),
        "POST": Operation(
            "updateWebhookEndpoint",
            TAG,
            "Update a webhook endpoint's URL, event types, description, metadata or switch",
            200,
            rs.WebhookEndpoint,
            body=rq.UpdateWebhookEndpoint,
            idempotent=True,
            scope=WRITE,
        ),
        "DELETE": Operation(
            "deleteWebhookEndpoint",
            TAG,
            "Delete a webhook endpoint (its pending deliveries are canceled)",
            200,
            rs.DeletedWebhookEndpoint,
            scope=WRITE,
        ),
    }

    def on_get(self, req, resp, endpoint_id: str) -> None:
        parse(rq.NoQuery, req.params, closed(set()), "The query")
        with UnitOfWork(self._engine) as uow:
            row = endpoints.get(uow, req.context.merchant_id, endpoint_id)
        resp.media = views.endpoint_json(row)

    def on_post(self, req, resp, endpoint_id: str) -> None:
        change = parse(
            rq.UpdateWebhookEndpoint,
            req.context.body,
            lambda body: rules_we.validate_update(body, EVENT_TYPES),
        )
        merchant_id, allow = req.context.merchant_id, self._settings.webhook_allow_private

        def effect(uow: UnitOfWork):
            row = endpoints.update_endpoint(uow, merchant_id, endpoint_id, change, allow)
            return 200, views.endpoint_json(row)

        self._runner.run(req, resp, effect)

    def on_delete(self, req, resp, endpoint_id: str) -> None:
        merchant_id = req.context.merchant_id
        resp.media = transact(self._new_uow, endpoints.delete, merchant_id, endpoint_id)


class RotateSecret(_Base):
    operations = {
        "POST": Operation(
            "rotateWebhookEndpointSecret",
            TAG,
            "A new signing secret (shown only here); the old one also signs until the overlap ends",
            200,
            rs.WebhookEndpoint,
            body=rq.RotateWebhookEndpointSecret,
            idempotent=True,
            scope=WRITE,
        )
    }

    def on_post(self, req, resp, endpoint_id: str) -> None:
        overlap = parse(rq.RotateWebhookEndpointSecret, req.context.body, _overlap)
        if overlap is None:
            overlap = self._settings.webhook_rotation_overlap_h
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row, secret = endpoints.rotate(uow, self._vault, merchant_id, endpoint_id, overlap)
            return 200, views.endpoint_json(row, secret)

        resp.set_header("Cache-Control", "no-store")
        self._runner.run(req, resp, effect, keep=_without_secret)
