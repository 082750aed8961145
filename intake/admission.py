"""Admission control on ``POST /v1/payment_intents``: 503 ``overloaded`` past MAX_BACKLOG,
or past MAX_QUEUE_WAIT_MS in the API's own queue (``QueueWait``).

Only creates are refused: they are what adds to the pipeline's backlog. Reads,
captures, cancels and refunds go on. The check runs before the body is
validated, so a refused create costs the API no database work, with one
exception: a create carrying an Idempotency-Key whose response is stored is a
replay, which costs the pipeline nothing, so it is looked up (one read) and
answered as usual. A refusal stores nothing, the key included: the same
request later goes through. Each process logs one line when it starts
refusing and one when it stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from intake.gthread import QUEUED_AT
from shared.config import Settings
from shared.db.uow import UnitOfWork
from shared.domain import admission
from shared.observability import metrics
from shared.services import idempotency
from shared.services.admission import BacklogSample, Overloaded, Saturated, from_database

log = logging.getLogger(__name__)

ROUTE = "/v1/payment_intents"


class Admission:
    def __init__(
        self, sample: BacklogSample | None, bound: int, replay: Callable[[str, str], bool]
    ):
        self._sample = sample  # None: MAX_BACKLOG is 0, nothing is counted
        self._bound = bound
        self._replay = replay
        self._lock = threading.Lock()
        self._refusing = False

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> Admission:
        bound = settings.max_backlog
        if bound <= 0:
            return cls(None, bound, lambda merchant_id, key: False)

        def replay(merchant_id: str, key: str) -> bool:
            with UnitOfWork(engine) as uow:
                return idempotency.has_response(
                    uow, merchant_id, key, retention_h=settings.idempotency_retention_h
                )

        return cls(from_database(lambda: UnitOfWork(engine), bound), bound, replay)

    def check(self, req) -> None:
        """Raise Overloaded if the backlog is at its bound and this create is no replay."""
        if self._sample is None:
            return
        backlog = self._sample.value()
        metrics.INTAKE_BACKLOG.labels(ROUTE).set(backlog)
        verdict = admission.decide(backlog, self._bound)
        self._note(verdict.admitted, backlog)
        if verdict.admitted:
            return
        key = req.context.idempotency_key
        if key is not None and self._replay(req.context.merchant_id, key):
            return
        metrics.INTAKE_SHED.labels(ROUTE).inc()
        raise Overloaded(verdict.retry_after_s)

    def _note(self, admitted: bool, backlog: int) -> None:
        refusing = not admitted
        with self._lock:
            changed, self._refusing = refusing != self._refusing, refusing
        if not changed:
            return
        if refusing:
            log.warning(
                "admission: backlog %d at MAX_BACKLOG %d, refusing creates (503)",
                backlog,
                self._bound,
            )
        else:
            log.warning(
                "admission: backlog %d under MAX_BACKLOG %d, creates accepted again",
                backlog,
                self._bound,
            )


class QueueWait:
    """Middleware: a create that waited past MAX_QUEUE_WAIT_MS for a thread gets 503.

    Second in the chain (after the request id), so a refusal costs no token
    check, body parse or database work; the stamp comes from
    ``intake.gthread.QueueStampedWorker`` (a server that sets none is never
    refused). Only creates, as above: they are the load that grows; a refused
    one stores nothing.
    """

    def __init__(self, bound_ms: int, clock: Callable[[], float] = time.monotonic):
        self._bound_ms = bound_ms
        self._clock = clock

    def process_request(self, req, resp) -> None:
        if self._bound_ms <= 0 or req.method != "POST" or req.path != ROUTE:
            return
        queued_at = req.env.get(QUEUED_AT)
        waited_ms = None if queued_at is None else (self._clock() - queued_at) * 1000
        verdict = admission.decide_wait(waited_ms, self._bound_ms)
        if verdict.admitted:
            return
        metrics.INTAKE_QUEUE_SHED.labels(ROUTE).inc()
        raise Saturated(verdict.retry_after_s, waited_ms)
