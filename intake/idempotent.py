"""Run an authenticated POST's effect under its Idempotency-Key (if the client sent one)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import falcon
from sqlalchemy import Engine

from intake.errors import PROBLEM_JSON, answer_for, problem_for
from shared.config import Settings
from shared.db.uow import Publish, UnitOfWork, transact
from shared.services import idempotency

log = logging.getLogger(__name__)

# The effect does its work in the given unit of work (services register what to
# enqueue with uow.enqueue) and returns (status, body); the runner commits.
Effect = Callable[[UnitOfWork], tuple[int, dict]]
# What a replay may show of a body: the stored copy (say, without a secret shown once).
Keep = Callable[[dict], dict]


def _client_error(exc: Exception) -> bool:
    answer = answer_for(exc)
    if answer is not None:
        return answer.status < 500
    return isinstance(exc, falcon.HTTPError) and exc.status_code < 500


class IdempotentRunner:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        mac: Callable[[str], str] | None,
        dispatch: Publish | None = None,
    ):
        self._engine = engine
        self._dispatch = dispatch
        self._settings = settings
        self._mac = mac

    def run(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        effect: Effect,
        savepoint: bool = True,
        keep: Keep | None = None,
        stored_path: str | None = None,
    ) -> None:
        """Run ``effect``; ``savepoint=False`` if it never refuses after its first write.

        ``keep``: what of a success's body is stored for replays (default: all of it).
        ``stored_path``: what the key's row records as the path, for a route whose
        path names personal data (its template); the keyed hash still covers the
        real path, so the same key on another path is refused as before.
        """
        # Read and checked by the Parameters middleware, before the body.
        key = req.context.idempotency_key
        args = (req, key, effect, savepoint, keep, stored_path or req.path)
        status, body, replayed = transact(self._new_uow, self._once, *args)
        if replayed:
            resp.set_header("Idempotent-Replayed", "true")
        _respond(resp, status, body)

    def _new_uow(self) -> UnitOfWork:
        return UnitOfWork(self._engine, self._dispatch)

    def _once(self, unit: UnitOfWork, req, key, effect: Effect, savepoint: bool, keep, path: str):
        if key is None:
            return (*effect(unit), False)
        return self._keyed(req, unit, key, effect, savepoint, keep, path)

    def _keyed(
        self, req, uow: UnitOfWork, key: str, effect: Effect, savepoint: bool, keep, path: str
    ):
        merchant_id = owner_of(req)
        request = (
            req.method,
            path,
            idempotency.request_hash(req.method, req.path, req.context.body, self._mac),
        )
        replay = idempotency.begin(
            uow,
            merchant_id,
            key,
            *request,
            retention_h=self._settings.idempotency_retention_h,
        )
        if replay is not None:
            return replay.status, replay.body, True
        # A savepoint lets a refusal (4xx) after some writes drop them and still
        # store the refusal; an effect that refuses only before writing skips it
        # (two round trips saved on the hottest path).
        try:
            if savepoint:
                with uow.savepoint():
                    status, body = effect(uow)
            else:
                status, body = effect(uow)
        except Exception as exc:
            if not _client_error(exc):
                raise  # our failure: the whole transaction rolls back, the key with it
            # The endpoint ran and refused: a retry must get the same answer.
            body = problem_for(exc, req.context.request_id)[0]
            status = body["status"]
        # Same transaction as the effect: both are kept, or neither.
        stored = keep(body) if keep is not None and status < 400 else body
        idempotency.complete(uow, merchant_id, key, request, status, stored)
        return status, body, False


def owner_of(req) -> str:
    """Whose keys these are: the merchant's, or on operator routes the operator's own."""
    # An operator id (op_...) never equals a merchant id (mch_...): the spaces never mix.
    operator = getattr(req.context, "operator", None)
    return req.context.merchant_id or operator.id


def _respond(resp: falcon.Response, status: int, body: dict) -> None:
    resp.status = status
    if status >= 400:
        resp.content_type = PROBLEM_JSON
        resp.data = json.dumps(body).encode()
    else:
        resp.media = body
