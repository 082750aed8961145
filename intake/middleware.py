"""Request id, bearer auth and JSON body parsing, as falcon middleware.

Resources opt in with class attributes: ``auth_required`` (a Bearer token is
needed) and ``accepts_form`` (the body may also be form-encoded, for OAuth).
Request bodies are never logged: they carry card numbers.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qsl

import falcon
import pydantic

from intake import untrusted
from intake.errors import ApiError
from intake.schemas.fields import IDEMPOTENCY_KEY, ObjectId
from intake.schemas.parse import parse
from intake.tls import peer_certificate
from shared.domain import cert_binding
from shared.domain.operators import role_allows
from shared.domain.scopes import claim_scopes
from shared.observability import context as log_context
from shared.security.signing import InvalidToken, SigningKeys
from shared.services.idempotency import check_key
from shared.services.revocations import RevocationList
from shared.services.suspensions import MerchantSuspended, SuspensionList

_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# DELETE too: DELETE /v1/operator/blocklist may name its entry in a JSON body.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM = "application/x-www-form-urlencoded"
OBJECT_ID = pydantic.TypeAdapter(ObjectId)


def sanitize_request_id(value: str | None) -> str:
    """Keep a caller's id if it is short and plain (it ends up in logs), else make one."""
    if value and _SANE_ID.fullmatch(value):
        return value
    return "req_" + secrets.token_hex(12)


class RequestId:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.request_id = sanitize_request_id(req.get_header("X-Request-Id"))
        # Set now, not in process_response, so error responses carry it too.
        resp.set_header("X-Request-Id", req.context.request_id)
        # Log lines of this request, and tasks it enqueues, carry the id.
        log_context.clear()
        log_context.bind(request_id=req.context.request_id)

    def process_resource(self, req, resp, resource, params) -> None:
        intent_id = (params or {}).get("intent_id")
        if intent_id and _SANE_ID.fullmatch(intent_id):
            log_context.bind(intent_id=intent_id)

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        log_context.clear()


def unauthorized(detail: str, error: str | None = None) -> ApiError:
    """A 401 with a Bearer challenge (naming ``error`` when given)."""
    challenge = 'Bearer realm="clearhouse"'
    if error:
        # RFC 6750 §3: the challenge names the error; the reason is safe to show.
        challenge += f', error="{error}"'
    return ApiError(401, error or "unauthorized", detail, headers={"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class OperatorPrincipal:
    """Who an operator route acts for: ``req.context.operator``."""

    id: str
    email: str
    role: str
    auth_time: int


def bearer_token(req, hint: str) -> str:
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized(f"A Bearer access token is required ({hint}).")
    return token


class Auth:
    """Bearer tokens: signed by us, of a client not revoked, carrying the operation's scope.

    The scope an operation needs is declared on its ``Operation`` (intake/openapi.py),
    which the OpenAPI document shows too. Operator routes (``operator_role`` on the
    resource: the least role that may call it) take only operator tokens, signed by
    their own ring for their own audience; merchant routes take only merchant
    tokens, so neither kind is ever accepted where the other is.
    """

    def __init__(
        self,
        keys: SigningKeys,
        audience: str,
        issuer: str,
        revoked: RevocationList | None = None,
        *,
        operator_keys: SigningKeys | None = None,
        operator_audience: str = "clearhouse-operator",
        operator_active: Callable[[str], bool] | None = None,
        suspended: SuspensionList | None = None,
    ):
        self._keys = keys
        self._audience = audience
        self._issuer = issuer
        self._revoked = revoked
        self._operator_keys = operator_keys
        self._operator_audience = operator_audience
        # operator id -> may it still act (not disabled)? None: not checked.
        self._operator_active = operator_active
        # The suspended merchants (reread about once a second); None: not checked.
        self._suspended = suspended

    def process_resource(self, req, resp, resource, params) -> None:
        if resource is None:
            return
        needed_role = getattr(resource, "operator_role", None)
        if needed_role is not None:
            # One path may serve several roles (GET for viewers, POST for support):
            # the method's Operation.role, when it names one, is the one checked.
            operation = getattr(resource, "operations", {}).get(req.method)
            self._operator(req, getattr(operation, "role", None) or needed_role)
            return
        if not getattr(resource, "auth_required", False):
            return
        token = bearer_token(req, "POST /v1/oauth/token")
        try:
            claims = self._keys.verify(token, audience=self._audience, issuer=self._issuer)
        except InvalidToken as exc:
            raise unauthorized(
                f"The access token is invalid: {exc.reason}.", "invalid_token"
            ) from None
        # A certificate-bound token (RFC 8705 §3) is good only over that certificate.
        if "cnf" in claims and not cert_binding.token_matches(
            claims["cnf"], peer_certificate(req.env)
        ):
            raise unauthorized(
                "The access token is invalid: certificate mismatch.", "invalid_token"
            )
        if self._revoked is not None and self._revoked.is_revoked(claims.get("client_id")):
            raise unauthorized("The access token's client has been revoked.", "invalid_token")
        # Tokens issued before the suspension too: the list is checked on every request.
        if self._suspended is not None and self._suspended.is_suspended(claims["sub"]):
            raise MerchantSuspended(claims["sub"])
        operation = getattr(resource, "operations", {}).get(req.method)
        needed = operation.scope if operation is not None else None
        if needed is not None and needed not in claim_scopes(claims.get("scope")):
            raise insufficient_scope(needed)
        req.context.merchant_id = claims["sub"]
        log_context.bind(merchant_id=claims["sub"])
        req.context.client_id = claims.get("client_id")

    def operator_claims(self, token: str) -> dict:
        """The claims of a valid operator token of an active operator; 401 otherwise.

        The web console (intake/console/) checks its session cookie's token with this too.
        """
        if self._operator_keys is None:
            raise unauthorized("Operator tokens are not accepted here.", "invalid_token")
        try:
            claims = self._operator_keys.verify(
                token, audience=self._operator_audience, issuer=self._issuer
            )
        except InvalidToken as exc:
            raise unauthorized(
                f"The operator token is invalid: {exc.reason}.", "invalid_token"
            ) from None
        if self._operator_active is not None and not self._operator_active(claims["sub"]):
            raise unauthorized("The operator account is disabled.", "invalid_token")
        return claims

    def _operator(self, req, needed_role: str) -> None:
        claims = self.operator_claims(bearer_token(req, "POST /v1/operator/login"))
        role = claims.get("role")
        if not role_allows(role, needed_role):
            raise ApiError(
                403,
                "insufficient_role",
                f"This operation needs the `{needed_role}` role (or a higher one);"
                f" the token's role is `{role}`.",
            )
        bind_operator(req, claims)


def bind_operator(req, claims: dict) -> None:
    """Make the request act for the operator a verified token's ``claims`` name."""
    req.context.operator = OperatorPrincipal(
        claims["sub"],
        str(claims.get("email", "")),
        claims.get("role"),
        int(claims.get("auth_time", 0)),
    )
    req.context.merchant_id = None
    req.context.client_id = None
    log_context.bind(operator_id=claims["sub"])


def insufficient_scope(scope: str) -> ApiError:
    """The 403 for a token without ``scope`` (RFC 6750 §3.1: the challenge names it)."""
    challenge = f'Bearer realm="clearhouse", error="insufficient_scope", scope="{scope}"'
    return ApiError(
        403,
        "insufficient_scope",
        f"The access token lacks the `{scope}` scope this operation needs.",
        headers={"WWW-Authenticate": challenge},
    )


class Parameters:
    """Path ids and the Idempotency-Key header through their models, before any body.

    Before routing, every header, the query string and the path are refused
    if they hold bytes no request may carry (intake/untrusted.py). A path id
    may not hold NUL (Postgres cannot compare it). The key lands in
    ``req.context.idempotency_key`` (None when not sent).
    """

    def process_request(self, req, resp) -> None:
        untrusted.check_headers(req.env)
        untrusted.check_pairs(req.env.get("QUERY_STRING", ""), "query")
        untrusted.check_path(req.env.get("PATH_INFO", ""))

    def process_resource(self, req, resp, resource, params) -> None:
        for name, value in (params or {}).items():
            try:
                OBJECT_ID.validate_python(value)
            except pydantic.ValidationError:
                raise ApiError(
                    400,
                    "parameter_invalid",
                    f"`{name}` must not contain NUL characters.",
                    param=name,
                    title="Invalid request",
                ) from None
        key = req.get_header("Idempotency-Key")
        if key is not None:
            key = parse(IDEMPOTENCY_KEY, key, check_key, "Idempotency-Key", "Idempotency-Key")
        req.context.idempotency_key = key


class JSONBody:
    """Parse the body of POST/PUT/PATCH into ``req.context.body`` (``{}`` when empty)."""

    def __init__(self, max_bytes: int):
        self._max = max_bytes

    def process_resource(self, req, resp, resource, params) -> None:
        req.context.body = None
        if resource is None or req.method not in BODY_METHODS:
            return
        media = (req.content_type or "").split(";", 1)[0].strip().lower()
        form_ok = getattr(resource, "accepts_form", False)
        raw = read_body(req, self._max)
        if not raw and not media:
            req.context.body = {}
        elif media == "application/json" or media.endswith("+json"):
            req.context.body = parse_json(raw) if raw.strip() else {}
        elif media == FORM and form_ok:
            req.context.body = parse_form(raw)
        else:
            allowed = "application/json" + (f" or {FORM}" if form_ok else "")
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Send the request body as {allowed}.",
                param="Content-Type",
            )


def read_body(req: falcon.Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; 413 past it, whatever Content-Length claimed."""
    length = req.content_length
    if length is not None:
        if length > limit:
            if length <= DRAIN_MAX:
                _drain(req.bounded_stream, 0)
            raise too_large(limit)
        stream = req.bounded_stream
    elif req.env.get("wsgi.input_terminated"):
        # Chunked upload: the server (gunicorn) ends the stream at the last chunk.
        stream = req.stream
    elif "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
        # Without the server's end-of-input guarantee a read could block forever.
        raise ApiError(411, "length_required", "Send a Content-Length header.")
    else:
        return b""
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(65536, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            _drain(stream, total)
            raise too_large(limit)
        chunks.append(chunk)


# Bodies up to this size are read and thrown away before a 413: closing a
# socket with unread data in it makes the kernel send a reset, which can
# destroy the 413 before the client reads it. Anything larger just gets cut off.
DRAIN_MAX = 1024 * 1024


def _drain(stream, seen: int) -> None:
    """Read and discard the rest of a too-large body, up to DRAIN_MAX in all."""
    while seen <= DRAIN_MAX:
        chunk = stream.read(65536)
        if not chunk:
            return
        seen += len(chunk)


def too_large(limit: int) -> ApiError:
    """The 413 for a body over ``limit`` bytes."""
    return ApiError(413, "request_too_large", f"The request body exceeds {limit} bytes.")


def _no_duplicates(pairs: list) -> dict:
    # {"amount": 1, "amount": 100000} must not mean whatever the parser picks.
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


# Exponents past this stay floats (and are refused where an integer is due): 1e999999
# must not become a million-digit integer.
MAX_EXPONENT = 40


def _number(text: str) -> int | float:
    # JSON Schema's integer is any number without a fraction, so 94.0 and 9.4e1 are the
    # integer 94, read exactly; 94.5 stays a float, which no amount accepts.
    value = Decimal(text)
    if value.is_finite() and value.adjusted() <= MAX_EXPONENT and value == value.to_integral():
        return int(value)
    return float(text)


def parse_json(raw: bytes):
    """Parse a JSON body strictly (no duplicate keys, no NaN); 400 invalid_json if not."""
    try:
        body = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_float=_number,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)[:200]
        raise ApiError(
            400, "invalid_json", f"The request body is not valid JSON ({reason})."
        ) from None
    untrusted.check_body(body)  # "\u0000" and "\ud800" are valid JSON
    return body


def parse_form(raw: bytes) -> dict:
    """Parse a form body (no duplicate keys); 400 if malformed."""
    untrusted.check_pairs(raw.decode("latin-1"), "body")
    try:
        pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=bool(raw))
        return _no_duplicates(pairs)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_request", f"Malformed form body ({exc}).") from None
