"""/v1/events and /v1/webhook_deliveries: the event log and webhook delivery outcomes."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.idempotent import IdempotentRunner
from shared.db.uow import UnitOfWork
from shared.domain.validation import ValidationError, reject_unknown, require_object
from shared.services import event_log, webhooks
from shared.services.events import EVENT_TYPES

MAX_LIMIT = 100


class _Base:
    auth_required = True

    def __init__(self, engine: Engine, runner: IdempotentRunner | None = None):
        self._engine = engine
        self._runner = runner


class Events(_Base):
    def on_get(self, req, resp) -> None:
        query = list_query(req.params, {"type": EVENT_TYPES})
        with UnitOfWork(self._engine) as uow:
            rows, has_more = event_log.list_events(uow.conn, req.context.merchant_id, **query)
        resp.media = _list([webhooks.event_json(r) for r in rows], has_more, "/v1/events")


class Event(_Base):
    def on_get(self, req, resp, event_id: str) -> None:
        for name in req.params:
            raise ValidationError(name, f"Received unknown parameter: {name}", "parameter_unknown")
        with UnitOfWork(self._engine) as uow:
            row = event_log.get_event(uow.conn, req.context.merchant_id, event_id)
        resp.media = webhooks.event_json(row)


class Redeliver(_Base):
    def on_post(self, req, resp, event_id: str) -> None:
        reject_unknown(require_object(req.context.body), set())
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = webhooks.redeliver(uow.conn, merchant_id, event_id)
            return 202, event_log.delivery_json(row)

        self._runner.run(req, resp, effect)


class Deliveries(_Base):
    def on_get(self, req, resp) -> None:
        query = list_query(req.params, {"event_id": None, "status": event_log.DELIVERY_STATUSES})
        with UnitOfWork(self._engine) as uow:
            rows, attempts, has_more = event_log.list_deliveries(
                uow.conn, req.context.merchant_id, **query
            )
        data = [event_log.delivery_json(r, attempts[r.id]) for r in rows]
        resp.media = _list(data, has_more, "/v1/webhook_deliveries")


def _list(data: list, has_more: bool, url: str) -> dict:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def list_query(params: dict, filters: dict) -> dict:
    """Validate limit, starting_after and the given filters ({name: allowed values or None})."""
    known = {"limit", "starting_after", *filters}
    for name, value in params.items():
        if name not in known:
            raise ValidationError(name, f"Received unknown parameter: {name}", "parameter_unknown")
        if not isinstance(value, str):
            raise ValidationError(name, f"`{name}` may be given only once.")
    raw_limit = params.get("limit", "10")
    digits = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3
    if not (digits and 1 <= int(raw_limit) <= MAX_LIMIT):
        raise ValidationError("limit", f"`limit` must be an integer from 1 to {MAX_LIMIT}.")
    out = {"limit": int(raw_limit), "starting_after": params.get("starting_after") or None}
    for name, allowed in filters.items():
        value = params.get(name) or None
        if value is not None and allowed is not None and value not in allowed:
            raise ValidationError(name, f"`{name}` must be one of: {', '.join(allowed)}.")
        out[name] = value
    return out
