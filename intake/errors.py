"""Every error leaves the API as one RFC 9457 ``application/problem+json`` body.

One handler, registered for every exception type, so a 404 from the router, a
domain ValidationError and an unexpected crash all look alike to merchants.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import falcon

from shared.db import faults
from shared.db.engine import outage
from shared.domain.validation import ValidationError
from shared.services.admission import Overloaded, Saturated
from shared.services.auth import InvalidClient, OAuthError
from shared.services.errors import InvalidState, NotFound, ServiceError
from shared.services.idempotency import KeyInUse, KeyReused
from shared.services.operator_auth import (
    InvalidCredentials,
    OperatorLocked,
    PasswordChangeRequired,
    ReauthenticationRequired,
)
from shared.services.refunds import AlreadyRefunded
from shared.services.suspensions import MerchantSuspended

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://docs.clearhouse.dev/errors/"

# Codes for errors falcon raises itself (routing, headers), which carry none.
STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "resource_missing",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
# Seconds a client should wait before retrying while a dependency is away.
RETRY_AFTER_S = 1
DEFAULT_DETAILS = {
    404: "No resource exists at this path.",
    405: "This path does not support this HTTP method.",
}


class BasicAuthFailed(InvalidClient):
    """invalid_client for a client that authenticated with HTTP Basic (RFC 6749 §5.2)."""


@dataclass(frozen=True)
class Answer:
    """How the API answers one class of domain error."""

    status: int
    title: str
    headers: dict[str, str] = field(default_factory=dict)


# Every domain error class and its answer; a class not listed is answered as its
# nearest listed base class. The body's code, detail and param come from the error.
# A request its model refuses never gets this far: intake/schemas/parse.py answers it
# 400. A domain refusal of a well-formed request (a rule no schema states, or the
# object's state) is a 400 too, as Stripe answers invalid requests.
ANSWERS: dict[type[Exception], Answer] = {
    ValidationError: Answer(400, "Invalid request"),
    ServiceError: Answer(400, "Invalid request"),
    NotFound: Answer(404, "No such object"),
    InvalidState: Answer(400, "Unexpected state"),
    AlreadyRefunded: Answer(400, "Already refunded"),
    KeyReused: Answer(422, "Idempotency key reused"),
    KeyInUse: Answer(409, "Idempotency key in use"),
    OAuthError: Answer(400, "OAuth error"),
    InvalidClient: Answer(401, "OAuth error"),
    # A client that tried Basic gets a Basic challenge back.
    BasicAuthFailed: Answer(401, "OAuth error", {"WWW-Authenticate": 'Basic realm="clearhouse"'}),
    # A suspended merchant's clients, on merchant routes and at the token endpoint.
    MerchantSuspended: Answer(403, "Merchant suspended"),
    # Operator login (shared/services/operator_auth.py); a locked account's answer
    # carries Retry-After and `retry_after_s` from the error (see problem_for).
    InvalidCredentials: Answer(401, "Invalid credentials"),
    PasswordChangeRequired: Answer(403, "Password change required"),
    OperatorLocked: Answer(423, "Locked"),
    # Admission control (intake/admission.py): carries Retry-After and `retry_after_s`.
    Overloaded: Answer(503, "Payment pipeline behind"),
    # The API's own queue (MAX_QUEUE_WAIT_MS): the same code, so clients retry alike.
    Saturated: Answer(503, "API saturated"),
    ReauthenticationRequired: Answer(
        401,
        "Reauthentication required",
        {"WWW-Authenticate": 'Bearer realm="clearhouse", error="invalid_token"'},
    ),
}


def answer_for(exc: Exception) -> Answer | None:
    """The answer for a domain error (None for anything else)."""
    for cls in type(exc).__mro__:
        if cls in ANSWERS:
            return ANSWERS[cls]
    return None


class ApiError(falcon.HTTPError):
    """An HTTP error with a machine-readable ``code`` and the offending ``param``."""

    def __init__(self, status, code, detail, *, param=None, title=None, headers=None):
        super().__init__(status, title=title, description=detail, headers=headers)
        self.api_code = code
        self.param = param


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    param: str | None = None,
    request_id: str | None = None,
    extra: dict | None = None,
) -> dict:
    """Build a problem object; ``extra`` adds extension members (never overrides)."""
    body = {
        "type": TYPE_BASE + code,
        "title": title or _status_title(status),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if param is not None:
        body["param"] = param
    if request_id is not None:
        body["request_id"] = request_id
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    return body


def problem_for(exc: Exception, request_id: str | None) -> tuple[dict, dict]:
    """Map any exception to (problem body, extra response headers)."""
    answer = answer_for(exc)
    if answer is not None:
        # OAuth client libraries read these members; problem+json allows extensions.
        extra = (
            {"error": exc.code, "error_description": exc.message}
            if isinstance(exc, OAuthError)
            else None
        )
        headers = dict(answer.headers)
        retry_after_s = getattr(exc, "retry_after_s", None)
        if retry_after_s is not None:
            # An error that knows when to come back (a locked operator) says so.
            headers["Retry-After"] = str(retry_after_s)
            extra = {**(extra or {}), "retry_after_s": retry_after_s}
        return problem(
            answer.status,
            exc.code,
            exc.message,
            title=answer.title,
            param=exc.param,
            request_id=request_id,
            extra=extra,
        ), headers
    if isinstance(exc, falcon.HTTPError):
        status = exc.status_code
        code = getattr(exc, "api_code", None) or STATUS_CODES.get(status, "http_error")
        title = exc.title
        if not title or title == falcon.code_to_http_status(status):
            title = _status_title(status)  # falcon's default titles repeat the code
        detail = exc.description or DEFAULT_DETAILS.get(status, title)
        param = getattr(exc, "param", None)
        body = problem(status, code, detail, title=title, param=param, request_id=request_id)
        return body, dict(exc.headers or {})
    if faults.is_transient(exc):
        # Postgres (or Redis) is away: not our bug and not the client's. The
        # transaction rolled back, so a retry with the same Idempotency-Key is safe.
        return problem(
            503,
            "service_unavailable",
            "The service is temporarily unavailable; retry with the same Idempotency-Key.",
            title="Service Unavailable",
            request_id=request_id,
        ), {"Retry-After": str(RETRY_AFTER_S)}
    return problem(
        500,
        "internal_error",
        "An unexpected error occurred; it has been logged.",
        request_id=request_id,
    ), {}


def handle(req: falcon.Request, resp: falcon.Response, exc: Exception, params) -> None:
    """The app's only error handler."""
    request_id = getattr(req.context, "request_id", None)
    body, headers = problem_for(exc, request_id)
    if body["code"] == "service_unavailable" and faults.is_transient(exc):
        outage.failed(exc)  # one log line per outage, not a traceback per request
    elif body["status"] >= 500 and answer_for(exc) is None:
        # (A domain error answered 5xx, overloaded, is a refusal we chose: no bug.)
        # Traceback only: the body may hold card numbers and is never logged.
        log.error(
            "unhandled error on %s %s (request_id=%s)",
            req.method,
            req.path,
            request_id,
            exc_info=exc,
        )
    write(resp, body, headers)


def write(resp: falcon.Response, body: dict, headers: dict | None = None) -> None:
    """Send a problem body with its status and headers."""
    resp.status = body["status"]
    resp.set_headers(headers or {})
    resp.content_type = PROBLEM_JSON
    # Serialized here: falcon's media handlers only know plain application/json.
    resp.data = json.dumps(body).encode()


def _status_title(status: int) -> str:
    return falcon.code_to_http_status(status).split(" ", 1)[1]
