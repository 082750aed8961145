"""/v1/payment_intents: create, poll, list, capture, cancel."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from intake.idempotent import IdempotentRunner
from intake.listing import list_object, list_query
from shared.db.uow import Publish, UnitOfWork
from shared.domain.intent import Status
from shared.domain.validation import (
    reject_unknown,
    require_object,
    validate_create,
)
from shared.services import intents, views
from shared.services.errors import NotFound

STATUSES = tuple(s.value for s in Status)


class _Base:
    auth_required = True

    def __init__(self, engine: Engine, vault, dispatch: Publish, runner: IdempotentRunner):
        self._engine = engine
        self._vault = vault
        self._dispatch = dispatch
        self._runner = runner


class Collection(_Base):
    def on_post(self, req, resp) -> None:
        # Validated before the idempotency key is claimed: a rejected body stores nothing.
        create = validate_create(req.context.body, datetime.now(UTC).date())
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = intents.create(
                uow,
                self._vault,
                merchant_id,
                create,
                client_ip=req.remote_addr,
                request_id=req.context.request_id,
            )
            return 202, views.intent_json(row)

        # intents.create refuses (unknown wallet) only before its first write.
        self._runner.run(req, resp, effect, savepoint=False)

    def on_get(self, req, resp) -> None:
        query = list_query(req.params, {"status": STATUSES})
        with UnitOfWork(self._engine) as uow:
            try:
                rows, has_more = intents.list_(uow, req.context.merchant_id, **query)
            except NotFound:
                raise NotFound(
                    "payment_intent", query["starting_after"], "starting_after"
                ) from None
        resp.media = list_object(
            [views.intent_json(r) for r in rows], has_more, "/v1/payment_intents"
        )


class Item(_Base):
    def on_get(self, req, resp, intent_id: str) -> None:
        with UnitOfWork(self._engine) as uow:
            row = intents.get(uow, req.context.merchant_id, intent_id)
        resp.media = views.intent_json(row)


class Capture(_Base):
    def on_post(self, req, resp, intent_id: str) -> None:
        body = require_object(req.context.body)
        reject_unknown(body, {"amount_to_capture"})
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = intents.capture(uow, merchant_id, intent_id, body.get("amount_to_capture"))
            return 200, views.intent_json(row)

        self._runner.run(req, resp, effect)


class Cancel(_Base):
    def on_post(self, req, resp, intent_id: str) -> None:
        body = require_object(req.context.body)
        reject_unknown(body, {"cancellation_reason"})
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = intents.cancel(uow, merchant_id, intent_id, body.get("cancellation_reason"))
            return 200, views.intent_json(row)

        self._runner.run(req, resp, effect)
