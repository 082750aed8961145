"""/v1/payment_intents: create, poll, list, capture, cancel."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from intake.admission import Admission
from intake.idempotent import IdempotentRunner
from intake.listing import list_object, list_query
from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.db.uow import Publish, UnitOfWork
from shared.domain.intent import Status
from shared.domain.validation import validate_create
from shared.services import intents, views
from shared.services.errors import NotFound

STATUSES = tuple(s.value for s in Status)
TAG = "payment_intents"


def _cancel_body(body: object) -> dict:
    body = closed({"cancellation_reason"})(body)
    intents.check_cancellation_reason(body.get("cancellation_reason"))
    return body


class _Base:
    auth_required = True

    def __init__(self, engine: Engine, vault, dispatch: Publish, runner: IdempotentRunner):
        self._engine = engine
        self._vault = vault
        self._dispatch = dispatch
        self._runner = runner


class Collection(_Base):
    operations = {
        "POST": Operation(
            "createPaymentIntent",
            TAG,
            "Create a payment intent (202, status processing)",
            202,
            rs.PaymentIntent,
            body=rq.CreatePaymentIntent,
            body_required=True,
            idempotent=True,
            scope="payment_intents:write",
        ),
        "GET": Operation(
            "listPaymentIntents",
            TAG,
            "List payment intents, newest first",
            200,
            rs.PaymentIntentList,
            query=rq.IntentQuery,
            scope="payment_intents:read",
        ),
    }

    def __init__(self, *deps, admission: Admission | None = None, banks=None):
        super().__init__(*deps)
        self._admission = admission
        # The banks a bank_account payment may name (BANKS).
        self._banks = banks

    def on_post(self, req, resp) -> None:
        # Past MAX_BACKLOG: 503 before any work (a stored replay is still answered).
        if self._admission is not None:
            self._admission.check(req)
        # Validated before the idempotency key is claimed: a rejected body stores nothing.
        today = datetime.now(UTC).date()
        create = parse(
            rq.CreatePaymentIntent,
            req.context.body,
            lambda body: validate_create(body, today, banks=self._banks),
        )
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
        query = parse(
            rq.IntentQuery,
            req.params,
            lambda params: list_query(params, {"status": STATUSES}),
            "The query",
        )
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
    operations = {
        "GET": Operation(
            "retrievePaymentIntent",
            TAG,
            "Retrieve a payment intent",
            200,
            rs.PaymentIntent,
            scope="payment_intents:read",
        )
    }

    def on_get(self, req, resp, intent_id: str) -> None:
        with UnitOfWork(self._engine) as uow:
            row = intents.get(uow, req.context.merchant_id, intent_id)
        resp.media = views.intent_json(row)


class Capture(_Base):
    operations = {
        "POST": Operation(
            "capturePaymentIntent",
            TAG,
            "Capture all or part of a held payment intent",
            200,
            rs.PaymentIntent,
            body=rq.CapturePaymentIntent,
            idempotent=True,
            scope="payment_intents:write",
        )
    }

    def on_post(self, req, resp, intent_id: str) -> None:
        body = parse(rq.CapturePaymentIntent, req.context.body, closed({"amount_to_capture"}))
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = intents.capture(uow, merchant_id, intent_id, body.get("amount_to_capture"))
            return 200, views.intent_json(row)

        self._runner.run(req, resp, effect)


class Cancel(_Base):
    operations = {
        "POST": Operation(
            "cancelPaymentIntent",
            TAG,
            "Cancel a processing or requires_capture payment intent",
            200,
            rs.PaymentIntent,
            body=rq.CancelPaymentIntent,
            idempotent=True,
            scope="payment_intents:write",
        )
    }

    def on_post(self, req, resp, intent_id: str) -> None:
        body = parse(rq.CancelPaymentIntent, req.context.body, _cancel_body)
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = intents.cancel(uow, merchant_id, intent_id, body.get("cancellation_reason"))
            return 200, views.intent_json(row)

        self._runner.run(req, resp, effect)
