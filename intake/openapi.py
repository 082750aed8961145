"""The OpenAPI 3.1 document, generated from the routes and the models they declare.

Each resource names its operations (``operations = {"GET": Operation(...)}``)
with the same models it validates with, so the document cannot tell another
story than the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from intake.schemas import responses
from intake.schemas.fields import IDEMPOTENCY_KEY, ObjectId
from shared.domain.operators import ROLES
from shared.domain.scopes import SCOPES

REF = "#/components/schemas/{model}"
# The API's error statuses, each answered as a Problem; every operation declares them all.
ERRORS = {
    400: "The request does not match this schema, or a rule it cannot state refused it (a"
    " Luhn checksum, an expiry in the past, a currency's maximum, the object's state); the"
    " Problem's `code` says which and `param` names the field.",
    401: "Missing or invalid credentials.",
    403: "The access token lacks the scope this operation needs (`insufficient_scope`; the"
    " detail and the WWW-Authenticate challenge name it); on operator routes, the operator's"
    " role is not enough (`insufficient_role`); a suspended merchant's clients"
    " (`merchant_suspended`).",
    404: "No such object (or another merchant's), or no such cursor.",
    409: "The Idempotency-Key is in use by a request still in flight.",
    413: "The request body is too large.",
    415: "The body is not JSON (or, for OAuth, a form).",
    422: "The Idempotency-Key was used with another request (`idempotency_key_reused`).",
    429: "Too many requests (`rate_limited`), or, on the OAuth endpoints, a client locked out"
    " after repeated failed authentications (`client_locked`); retry after `Retry-After`"
    " seconds.",
    503: "A dependency is unavailable (`service_unavailable`), or, on creates, the payment"
    " pipeline is behind (`overloaded`); retry after `Retry-After` seconds with the same"
    " Idempotency-Key.",
}
FORM = "application/x-www-form-urlencoded"
# On every response while the rate limiter is up (intake/ratelimit.py): the tighter limit.
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": ("Requests the tighter applying limit allows at once (its burst).", 1),
    "RateLimit-Remaining": ("Requests left before that limit refuses.", 0),
    "RateLimit-Reset": ("Seconds until that limit is whole again.", 0),
}
RETRY_AFTER = {"Retry-After": ("Seconds to wait before retrying.", 1)}
RETRY_STATUSES = (423, 429, 503)
# Statuses only some operations answer (Operation.errors names them).
LOCKED = {
    423: "The operator account is locked after repeated failed logins (`operator_locked`);"
    " retry after `Retry-After` seconds."
}


def _headers(spec: dict[str, tuple[str, int]]) -> dict:
    return {
        name: {"description": text, "schema": {"type": "integer", "minimum": low}}
        for name, (text, low) in spec.items()
    }


def _response(description: str, content: dict, status: int) -> dict:
    headers = RATE_LIMIT_HEADERS | (RETRY_AFTER if status in RETRY_STATUSES else {})
    return {"description": description, "headers": _headers(headers), "content": content}


@dataclass(frozen=True)
class Operation:
    """One route and method, as the document shows it."""

    id: str
    tag: str
    summary: str
    status: int
    response: type[BaseModel]
    body: type[BaseModel] | None = None
    body_required: bool = False
    query: type[BaseModel] | None = None
    auth: bool = True
    # The OAuth scope a token needs (shared/domain/scopes.py); every authenticated
    # operation names one, and the Auth middleware checks it.
    scope: str | None = None
    # Operator routes (/v1/operator/...): the least operator role that may call it
    # (shared/domain/operators.py); such an operation takes an operator token, no scope.
    role: str | None = None
    idempotent: bool = False
    form: bool = False
    csv: bool = False
    # Error statuses this operation answers besides ERRORS (say, LOCKED), or its own
    # wording of one of them.
    errors: dict[int, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=_name(model))}


def _not_null(schema: dict) -> dict:
    """A query parameter's schema: an absent value is not ``null``."""
    branches = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**rest, **branches[0]}
    return schema


def _query(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        prop = _not_null({k: v for k, v in prop.items() if k != "title"})
        params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def _path(template: str) -> list[dict]:
    schema = TypeAdapter(ObjectId).json_schema()
    return [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name in re.findall(r"\{(\w+)\}", template)
    ]


def _operation(template: str, op: Operation) -> dict:
    content = _json(_ref(op.response))
    if op.csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    problem = {"application/problem+json": {"schema": _ref(responses.Problem)}}
    out = {
        "operationId": op.id,
        "tags": [op.tag],
        "summary": op.summary,
        "responses": {
            str(op.status): _response(op.summary, content, op.status),
            **{str(s): _response(d, problem, s) for s, d in (ERRORS | op.errors).items()},
        },
    }
    params = _path(template) + (_query(op.query) if op.query else [])
    if op.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": IDEMPOTENCY_KEY.json_schema(),
            }
        )
    if params:
        out["parameters"] = params
    if op.body is not None:
        body = _json(_ref(op.body))
        if op.form:
            body[FORM] = {"schema": _ref(op.body)}
        out["requestBody"] = {"required": op.body_required, "content": body}
    if op.role is not None:
        out["security"] = [{"operatorToken": []}]
        out["x-operator-role"] = op.role
    else:
        out["security"] = [{"oauth2": [op.scope]}] if op.auth else []
    return {**out, **op.extra}


def _models(ops: list[Operation]) -> list[tuple[type[BaseModel], str]]:
    seen: dict[type[BaseModel], str] = {responses.Problem: "serialization"}
    for op in ops:
        seen[op.response] = "serialization"
        if op.body is not None:
            seen[op.body] = "validation"
    return list(seen.items())


def build(routes: list[tuple[str, object]]) -> dict:
    """The document for ``routes`` [(uri template, resource)]."""
    paths: dict[str, dict] = {}
    ops: list[Operation] = []
    for template, resource in routes:
        declared = getattr(resource, "operations", {})
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            responder = hasattr(resource, f"on_{method.lower()}")
            if responder != (method in declared):
                raise ValueError(f"{method} {template}: responder and Operation must match")
            op = declared.get(method)
            if responder and op.role is not None and op.role not in ROLES:
                raise ValueError(f"{method} {template}: an operator operation names its role")
            if responder and op.role is None and op.auth and op.scope not in SCOPES:
                raise ValueError(f"{method} {template}: an authenticated operation names its scope")
            if responder:
                paths.setdefault(template, {})[method.lower()] = _operation(
                    template, declared[method]
                )
                ops.append(declared[method])
    _, defs = models_json_schema(_models(ops), ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clearhouse API",
            "version": "v1",
            "description": "Errors are RFC 9457 problems; `code` is stable, `param` names the "
            "field.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "operatorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Operator tokens (EdDSA, their own audience and keys) from"
                    " POST /v1/operator/login with a TOTP code; 15 minutes each. Each operator"
                    " operation names the least role that may call it (`x-operator-role`:"
                    " viewer < support < admin). Merchant tokens are refused here.",
                },
                "oauth2": {
                    "type": "oauth2",
                    "description": "Bearer access tokens (JWT, EdDSA) from client_credentials;"
                    " each operation names the scope it needs.",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "/v1/oauth/token",
                            "refreshUrl": "/v1/oauth/token",
                            "scopes": dict(SCOPES),
                        }
                    },
                },
            },
            "schemas": defs["$defs"],
        },
    }
