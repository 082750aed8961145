"""/v1/events and /v1/webhook_deliveries: the event log and webhook delivery outcomes."""

from __future__ import annotations

from sqlalchemy import Engine

from intake.idempotent import IdempotentRunner
from intake.listing import list_object, list_query
from shared.db.uow import UnitOfWork
from shared.domain.validation import ValidationError, reject_unknown, require_object
from shared.services import event_log, views
from shared.services.events import EVENT_TYPES


class _Base:
    auth_required = True

    def __init__(self, engine: Engine, runner: IdempotentRunner | None = None):
        self._engine = engine
        self._runner = runner


class Events(_Base):
    def on_get(self, req, resp) -> None:
        query = list_query(req.params, {"type": EVENT_TYPES})
        with UnitOfWork(self._engine) as uow:
            rows, has_more = event_log.list_events(uow, req.context.merchant_id, **query)
        resp.media = list_object([views.event_json(r) for r in rows], has_more, "/v1/events")


class Event(_Base):
    def on_get(self, req, resp, event_id: str) -> None:
        for name in req.params:
            raise ValidationError(name, f"Received unknown parameter: {name}", "parameter_unknown")
        with UnitOfWork(self._engine) as uow:
            row = event_log.get_event(uow, req.context.merchant_id, event_id)
        resp.media = views.event_json(row)


class Redeliver(_Base):
    def on_post(self, req, resp, event_id: str) -> None:
        reject_unknown(require_object(req.context.body), set())
        merchant_id = req.context.merchant_id

        def effect(uow: UnitOfWork):
            row = event_log.redeliver(uow, merchant_id, event_id)
            return 202, views.delivery_json(row)

        self._runner.run(req, resp, effect)


class Deliveries(_Base):
    def on_get(self, req, resp) -> None:
        query = list_query(req.params, {"event_id": None, "status": event_log.DELIVERY_STATUSES})
        with UnitOfWork(self._engine) as uow:
            rows, attempts, has_more = event_log.list_deliveries(
                uow, req.context.merchant_id, **query
            )
        data = [views.delivery_json(r, attempts[r.id]) for r in rows]
        resp.media = list_object(data, has_more, "/v1/webhook_deliveries")
