"""Exceptions: every problem+json answer becomes one, carrying its code, param and request id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class ClearhouseError(Exception):
    """Base of every error the client raises.

    ``http_status`` is None when no answer came back (a connection error); ``problem``
    is the RFC 9457 body as the API sent it (``{}`` when it sent none).
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        problem: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.param = param
        self.request_id = request_id
        self.problem = dict(problem or {})
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.param:
            parts.append(f"param={self.param}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts) if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


class APIConnectionError(ClearhouseError):
    """No answer: refused, reset, timed out, TLS failure. Safe to retry with the same key."""


class APIError(ClearhouseError):
    """A 5xx answer: the server (or a dependency of it) failed. Retried with the same key."""


class InvalidRequestError(ClearhouseError):
    """400, 404, 413, 415: this request is wrong and will stay wrong; do not resend it."""


class IdempotencyError(InvalidRequestError):
    """409 ``idempotency_key_in_use`` (retried) or 422 ``idempotency_key_reused`` (final)."""


class AuthenticationError(ClearhouseError):
    """401: bad client credentials, or a token the API no longer accepts."""


class PermissionDeniedError(ClearhouseError):
    """403: a missing scope, a suspended merchant."""


class RateLimitError(ClearhouseError):
    """429: retried after ``Retry-After``; raised once the retries are spent."""


class SignatureVerificationError(ClearhouseError):
    """A webhook whose ``Clearhouse-Signature`` does not verify (or is stale)."""

    def __init__(self, message: str, header: str | None = None, payload: bytes | str = b""):
        super().__init__(message)
        self.header = header
        self.payload = payload


def _class_for(status: int, code: str | None) -> type[ClearhouseError]:
    if code in ("idempotency_key_in_use", "idempotency_key_reused"):
        return IdempotencyError
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return APIError
    return InvalidRequestError


def from_response(status: int, body: bytes, headers: Mapping[str, str]) -> ClearhouseError:
    """The exception for an error answer, read from its problem+json body when it has one."""
    try:
        problem = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, ValueError):
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    code = problem.get("code") or problem.get("error")
    message = problem.get("detail") or problem.get("title") or f"HTTP {status}"
    request_id = problem.get("request_id") or headers.get("x-request-id")
    return _class_for(status, code)(
        message,
        http_status=status,
        code=code,
        param=problem.get("param"),
        request_id=request_id,
        problem=problem,
        headers=headers,
    )
