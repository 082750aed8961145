"""Run an authenticated POST's effect under its Idempotency-Key (if the client sent one)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import falcon
from sqlalchemy import Engine

from intake.errors import PROBLEM_JSON, problem_for
from shared.config import Settings
from shared.db.uow import Dispatch, UnitOfWork
from shared.domain.validation import ValidationError
from shared.services import idempotency
from shared.services.errors import ServiceError

log = logging.getLogger(__name__)

# The effect does its work in the given unit of work (services register what to
# enqueue with enqueue_after_commit) and returns (status, body); the runner commits.
Effect = Callable[[UnitOfWork], tuple[int, dict]]


def _client_error(exc: Exception) -> bool:
    if isinstance(exc, ServiceError | ValidationError):
        return True
    return isinstance(exc, falcon.HTTPError) and exc.status_code < 500


class IdempotentRunner:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        mac: Callable[[str], str] | None,
        dispatch: Dispatch | None = None,
    ):
        self._engine = engine
        self._dispatch = dispatch
        self._settings = settings
        self._mac = mac

    def run(self, req: falcon.Request, resp: falcon.Response, effect: Effect) -> None:
        key = idempotency.check_key(req.get_header("Idempotency-Key"))
        if key is None:
            with UnitOfWork(self._engine, self._dispatch) as uow:
                status, body = effect(uow)
                uow.commit()
            return _respond(resp, status, body)
        merchant_id = req.context.merchant_id
        replay = self._begin(req, merchant_id, key)
        if replay is not None:
            resp.set_header("Idempotent-Replayed", "true")
            return _respond(resp, replay.status, replay.body)
        try:
            with UnitOfWork(self._engine, self._dispatch) as uow:
                status, body = effect(uow)
                # Same transaction as the effect: both are kept, or neither.
                idempotency.complete(uow.conn, merchant_id, key, status, body)
                uow.commit()
        except Exception as exc:
            if _client_error(exc):
                # The endpoint ran and refused: a retry must get the same answer.
                problem, _ = problem_for(exc, req.context.request_id)
                self._store_error(merchant_id, key, problem)
            else:
                self._release(merchant_id, key)
            raise
        _respond(resp, status, body)

    def _begin(self, req, merchant_id: str, key: str):
        req_hash = idempotency.request_hash(req.method, req.path, req.context.body, self._mac)
        with UnitOfWork(self._engine) as uow:
            replay = idempotency.begin(
                uow.conn,
                merchant_id,
                key,
                req.method,
                req.path,
                req_hash,
                lock_timeout_s=self._settings.idempotency_lock_timeout_s,
                retention_h=self._settings.idempotency_retention_h,
            )
            uow.commit()
        return replay

    def _store_error(self, merchant_id: str, key: str, problem: dict) -> None:
        with UnitOfWork(self._engine) as uow:
            idempotency.complete(uow.conn, merchant_id, key, problem["status"], problem)
            uow.commit()

    def _release(self, merchant_id: str, key: str) -> None:
        try:
            with UnitOfWork(self._engine) as uow:
                idempotency.release(uow.conn, merchant_id, key)
                uow.commit()
        except Exception:
            # The original error matters more; the stale lock expires on its own.
            log.exception("could not release idempotency key after a failed request")


def _respond(resp: falcon.Response, status: int, body: dict) -> None:
    resp.status = status
    if status >= 400:
        resp.content_type = PROBLEM_JSON
        resp.data = json.dumps(body).encode()
    else:
        resp.media = body
