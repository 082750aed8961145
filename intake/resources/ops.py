"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, text

from intake import openapi
from intake.errors import ApiError
from intake.openapi import Operation
from intake.schemas import responses as rs

log = logging.getLogger(__name__)


class Health:
    operations = {"GET": Operation("health", "ops", "Liveness", 200, rs.Health, auth=False)}

    def on_get(self, req, resp) -> None:
        # Liveness only: a database outage must not make the orchestrator kill us.
        resp.media = {"status": "ok"}


class Ready:
    operations = {
        "GET": Operation(
            "ready",
            "ops",
            "Readiness: Postgres, Redis and the broker answer (else 503)",
            200,
            rs.Ready,
            auth=False,
        )
    }

    def __init__(self, engine: Engine, redis_client, broker=None):
        self._engine = engine
        self._redis = redis_client
        # RabbitMQ when BROKER_URL is amqp (``ping() -> bool``); None: Redis is the broker.
        self._broker = broker

    def on_get(self, req, resp) -> None:
        checks = {"postgres": self._postgres(), "redis": self._redis_ping()}
        if self._broker is not None:
            checks["broker"] = self._broker_ping()
        down = [name for name, ok in checks.items() if not ok]
        if down:
            raise ApiError(503, "not_ready", f"Dependencies unavailable: {', '.join(down)}.")
        resp.media = {"status": "ready", "checks": {name: "ok" for name in checks}}

    def _postgres(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            log.warning("readiness: postgres check failed", exc_info=True)
            return False

    def _redis_ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception:
            log.warning("readiness: redis check failed", exc_info=True)
            return False

    def _broker_ping(self) -> bool:
        ok = self._broker.ping()
        if not ok:
            log.warning("readiness: broker check failed")
        return ok


class OpenAPI:
    operations = {
        "GET": Operation("openapi", "ops", "This document", 200, rs.OpenAPIDocument, auth=False)
    }

    def __init__(self, routes: list[tuple[str, object]]):
        self._routes = routes
        self._spec: dict | None = None

    def on_get(self, req, resp) -> None:
        if self._spec is None:
            # Built on first use: the route list is complete once the app is.
            self._spec = openapi.build(self._routes)
        resp.media = self._spec
