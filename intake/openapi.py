"""The hand-written OpenAPI 3.1 document served at /openapi.json."""

from __future__ import annotations

from functools import lru_cache

from intake.openapi_schemas import INT, ref, schemas
from shared.domain.intent import Status


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    problem = {"content": {"application/problem+json": {"schema": ref("Problem")}}}
    return {str(s): {"description": "Error", **problem} for s in statuses}


def _op(summary: str, responses: dict, *, body=None, params=(), auth=True, idem=False) -> dict:
    op = {"summary": summary, "responses": responses}
    parameters = list(params)
    if idem:
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    if not auth:
        op["security"] = []
    return op


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
OBJECT = {"type": "object"}


def _query(name: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": {"type": "string"}}


@lru_cache(maxsize=1)
def spec() -> dict:
    """The OpenAPI document (built once; it never changes while running)."""
    intent = _json(ref("PaymentIntent"), "The payment intent")
    token_body = {
        "type": "object",
        "properties": {
            k: {"type": "string"}
            for k in ("grant_type", "client_id", "client_secret", "refresh_token", "scope")
        },
    }
    page_params = [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
        },
        _query("starting_after"),
    ]
    list_params = [
        *page_params,
        {"name": "status", "in": "query", "schema": {"enum": [s.value for s in Status]}},
    ]
    plain = {"200": {"description": "OK"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "clearhouse API", "version": "v1"},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/oauth/token": {
                "post": _op(
                    "Issue an access token (client_credentials or refresh_token)",
                    {"200": _json(ref("Token"), "Tokens"), **_errors(400, 401)},
                    body=token_body,
                    auth=False,
                )
            },
            "/v1/oauth/revoke": {
                "post": _op(
                    "Revoke a refresh token and its family",
                    {**plain, **_errors(400, 401)},
                    body={"type": "object", "properties": {"token": {"type": "string"}}},
                    auth=False,
                )
            },
            "/.well-known/jwks.json": {"get": _op("Public signing keys", plain, auth=False)},
            "/v1/payment_intents": {
                "post": _op(
                    "Create a payment intent",
                    {"202": intent, **_errors(400, 401, 409, 413, 415, 422)},
                    body=ref("CreatePaymentIntent"),
                    idem=True,
                ),
                "get": _op(
                    "List payment intents, newest first",
                    {"200": _json(ref("PaymentIntentList"), "A page"), **_errors(400, 401, 404)},
                    params=list_params,
                ),
            },
            "/v1/payment_intents/{id}": {
                "get": _op(
                    "Retrieve a payment intent", {"200": intent, **_errors(401, 404)}, params=[_ID]
                )
            },
            "/v1/payment_intents/{id}/capture": {
                "post": _op(
                    "Capture a held payment intent",
                    {"200": intent, **_errors(400, 401, 404, 409)},
                    body={
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"amount_to_capture": INT},
                    },
                    params=[_ID],
                    idem=True,
                )
            },
            "/v1/payment_intents/{id}/cancel": {
                "post": _op(
                    "Cancel a payment intent",
                    {"200": intent, **_errors(400, 401, 404, 409)},
                    body={
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"cancellation_reason": {"type": "string"}},
                    },
                    params=[_ID],
                    idem=True,
                )
            },
            "/v1/balance": {"get": _op("Ledger balances per currency", {**plain, **_errors(401)})},
            "/v1/refunds": {
                "post": _op(
                    "Refund all or part of a succeeded payment intent",
                    {"200": _json(OBJECT, "The refund"), **_errors(400, 401, 404, 409, 422)},
                    body={
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["payment_intent"],
                        "properties": {
                            "payment_intent": {"type": "string"},
                            "amount": INT,
                            "reason": {"type": "string"},
                            "metadata": {"type": "object"},
                        },
                    },
                    idem=True,
                ),
                "get": _op(
                    "List refunds, newest first",
                    {"200": _json(OBJECT, "A page"), **_errors(400, 401)},
                    params=[*page_params, _query("payment_intent")],
                ),
            },
            "/v1/refunds/{id}": {
                "get": _op(
                    "Retrieve a refund",
                    {"200": _json(OBJECT, "The refund"), **_errors(401, 404)},
                    params=[_ID],
                )
            },
            "/v1/events": {
                "get": _op(
                    "List events, newest first",
                    {"200": _json(OBJECT, "A page"), **_errors(400, 401)},
                    params=[*page_params, _query("type")],
                )
            },
            "/v1/events/{id}": {
                "get": _op(
                    "Retrieve an event",
                    {"200": _json(OBJECT, "The event"), **_errors(401, 404)},
                    params=[_ID],
                )
            },
            "/v1/events/{id}/redeliver": {
                "post": _op(
                    "Send an event's webhook again",
                    {"202": _json(OBJECT, "The new delivery"), **_errors(401, 404, 409)},
                    params=[_ID],
                    idem=True,
                )
            },
            "/v1/webhook_deliveries": {
                "get": _op(
                    "List webhook deliveries and their attempts",
                    {"200": _json(OBJECT, "A page"), **_errors(400, 401)},
                    params=[*page_params, _query("event_id"), _query("status")],
                )
            },
            "/v1/reports/daily": {
                "get": _op(
                    "Daily report (JSON, or CSV with Accept: text/csv)",
                    {"200": _json(OBJECT, "The report"), **_errors(400, 401, 404)},
                    params=[_query("date", required=True)],
                )
            },
            "/health": {"get": _op("Liveness", plain, auth=False)},
            "/ready": {
                "get": _op("Readiness (Postgres and Redis)", {**plain, **_errors(503)}, auth=False)
            },
            "/openapi.json": {"get": _op("This document", plain, auth=False)},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            },
            "schemas": schemas(),
        },
    }
