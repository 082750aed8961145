"""/v1/refunds: create (idempotent), retrieve, list."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.idempotent import IdempotentRunner
from intake.resources.intents import MAX_LIMIT
from shared.db.uow import UnitOfWork
from shared.domain.refunds import validate_create
from shared.domain.validation import ValidationError
from shared.services import refunds

LIST_PARAMS = {"limit", "starting_after", "payment_intent"}


class _Base:
    auth_required = True

    def __init__(self, engine: Engine, runner: IdempotentRunner):
        self._engine = engine
        self._runner = runner


class Collection(_Base):
    def on_post(self, req, resp) -> None:
        # Validated before the idempotency key is claimed: a rejected body stores nothing.
        create = validate_create(req.context.body)
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = refunds.create(uow.conn, merchant_id, create, req.context.request_id)
            return 200, refunds.to_json(row)

        self._runner.run(req, resp, effect)

    def on_get(self, req, resp) -> None:
        query = list_query(req.params)
        with UnitOfWork(self._engine) as uow:
            rows, has_more = refunds.list_(uow.conn, req.context.merchant_id, **query)
        resp.media = {
            "object": "list",
            "data": [refunds.to_json(r) for r in rows],
            "has_more": has_more,
            "url": "/v1/refunds",
        }


class Item(_Base):
    def on_get(self, req, resp, refund_id: str) -> None:
        with UnitOfWork(self._engine) as uow:
            row = refunds.get(uow.conn, req.context.merchant_id, refund_id)
        resp.media = refunds.to_json(row)


def list_query(params: dict) -> dict:
    """Validate list query parameters (unknown or repeated ones are errors)."""
    for name, value in params.items():
        if name not in LIST_PARAMS:
            raise ValidationError(name, f"Received unknown parameter: {name}", "parameter_unknown")
        if not isinstance(value, str):
            raise ValidationError(name, f"`{name}` may be given only once.")
    raw_limit = params.get("limit", "10")
    digits = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3
    if not (digits and 1 <= int(raw_limit) <= MAX_LIMIT):
        raise ValidationError("limit", f"`limit` must be an integer from 1 to {MAX_LIMIT}.")
    return {
        "limit": int(raw_limit),
        "payment_intent": params.get("payment_intent") or None,
        "starting_after": params.get("starting_after") or None,
    }
