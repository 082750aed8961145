"""OAuth 2 token and revocation endpoints, and the public JWKS."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from sqlalchemy import Engine

from intake.errors import ApiError, BasicAuthFailed
from intake.headers import no_store
from intake.openapi import Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import parse
from intake.tls import peer_certificate
from shared.config import Settings
from shared.db.uow import UnitOfWork, transact
from shared.security.signing import SigningKeys
from shared.services import auth
from shared.services.auth import InvalidClient, OAuthError
from shared.services.lockout import ClientLocked, Lockout

GRANTS = ("client_credentials", "refresh_token")


def _param(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    raise OAuthError("invalid_request", f"`{name}` must be a string.", param=name)


def client_credentials(req, body: dict) -> tuple[str | None, str | None, bool]:
    """(client_id, client_secret, via_basic) from HTTP Basic or the body, never both."""
    scheme, _, encoded = (req.get_header("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return _param(body, "client_id"), _param(body, "client_secret"), False
    if body.get("client_secret") is not None:
        raise OAuthError("invalid_request", "Use one client authentication method, not two.")
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        user, sep, password = "", "", ""
    if not sep:
        raise BasicAuthFailed()
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return unquote(user.replace("+", " ")), unquote(password.replace("+", " ")), True


def _object(body: object) -> dict:
    if not isinstance(body, dict):
        raise OAuthError("invalid_request", "The request body must be an object.")
    return body


def _invalid(code: str, detail: str, param: str | None) -> OAuthError:
    return OAuthError("invalid_request", detail, param=param)


def _grant_type(body: object) -> str:
    """The token request's grant type, its string params checked."""
    body = _object(body)
    grant = _param(body, "grant_type")
    if not grant:
        raise OAuthError(
            "invalid_request", "Missing required param: grant_type.", param="grant_type"
        )
    if grant not in GRANTS:
        raise OAuthError(
            "unsupported_grant_type",
            f"grant_type must be one of: {', '.join(GRANTS)}.",
            param="grant_type",
        )
    for name in ("client_id", "client_secret", "scope", "refresh_token"):
        _param(body, name)
    if grant == "refresh_token" and not body.get("refresh_token"):
        raise OAuthError(
            "invalid_request", "Missing required param: refresh_token.", param="refresh_token"
        )
    return grant


def _revoked_token(body: object) -> str:
    """The revocation request's token, its string params checked."""
    body = _object(body)
    token = _param(body, "token")
    if not token:
        raise OAuthError("invalid_request", "Missing required param: token.", param="token")
    for name in ("client_id", "client_secret", "token_type_hint"):
        _param(body, name)
    return token


class Token:
    accepts_form = True
    operations = {
        "POST": Operation(
            "createToken",
            "oauth",
            "Issue an access token (client_credentials, or refresh_token to rotate)",
            200,
            rs.Token,
            body=rq.TokenRequest,
            body_required=True,
            auth=False,
            form=True,
        )
    }

    def __init__(
        self, engine: Engine, keys: SigningKeys, settings: Settings, lockout: Lockout | None = None
    ):
        self._engine = engine
        self._keys = keys
        self._settings = settings
        self._lockout = lockout

    def on_post(self, req, resp) -> None:
        body = req.context.body
        grant = parse(rq.TokenRequest, body, _grant_type, refuse=_invalid)
        client_id, secret, via_basic = client_credentials(req, body)
        _ensure_open(self._lockout, client_id)
        try:
            result = self._grant(grant, body, client_id, secret, peer_certificate(req.env))
        except InvalidClient:
            _failed(self._lockout, client_id)
            if via_basic:
                raise BasicAuthFailed() from None
            raise
        no_store(resp)
        resp.media = result

    def _grant(self, grant: str, body: dict, client_id, secret, peer_cert) -> dict:
        # A reused refresh token is refused, and its family's revocation kept.
        return transact(
            self._new_uow,
            self._issue,
            grant,
            body,
            client_id,
            secret,
            peer_cert,
            keep_on=(auth.RefreshTokenReused,),
        )

    def _new_uow(self) -> UnitOfWork:
        return UnitOfWork(self._engine)

    def _issue(self, unit: UnitOfWork, grant, body: dict, client_id, secret, peer_cert) -> dict:
        keys, settings = self._keys, self._settings
        if grant == "client_credentials":
            return auth.client_credentials(
                unit, keys, settings, client_id, secret, _param(body, "scope"), peer_cert=peer_cert
            )
        refresh_token = _param(body, "refresh_token")
        return auth.refresh(
            unit,
            keys,
            settings,
            refresh_token,
            client_id,
            secret,
            _param(body, "scope"),
            peer_cert=peer_cert,
        )


class Revoke:
    accepts_form = True
    operations = {
        "POST": Operation(
            "revokeToken",
            "oauth",
            "Revoke a refresh token and its family (200 whether or not it was known)",
            200,
            rs.Revoked,
            body=rq.RevokeRequest,
            body_required=True,
            auth=False,
            form=True,
        )
    }

    def __init__(self, engine: Engine, lockout: Lockout | None = None):
        self._engine = engine
        self._lockout = lockout

    def on_post(self, req, resp) -> None:
        body = req.context.body
        token = parse(rq.RevokeRequest, body, _revoked_token, refuse=_invalid)
        client_id, secret, via_basic = client_credentials(req, body)
        _ensure_open(self._lockout, client_id)
        try:
            transact(lambda: UnitOfWork(self._engine), _revoke, token, client_id, secret, via_basic)
        except InvalidClient:
            _failed(self._lockout, client_id)
            raise
        # RFC 7009 §2.2: 200 whether or not the token was known.
        resp.media = {}


def _revoke(unit: UnitOfWork, token: str, client_id, secret, via_basic: bool) -> None:
    client = None
    if client_id is not None:
        try:
            client = auth.authenticate_client(unit, client_id, secret)
        except InvalidClient:
            if via_basic:
                raise BasicAuthFailed() from None
            raise
    auth.revoke(unit, token, client.client_id if client else None)


def _ensure_open(lockout: Lockout | None, client_id) -> None:
    """429 client_locked for a client id locked out (whatever the secret sent)."""
    if lockout is None:
        return
    try:
        lockout.ensure_open(client_id)
    except ClientLocked as exc:
        raise ApiError(
            429,
            "client_locked",
            f"Too many failed authentications for this client; retry after {exc.retry_after_s} s.",
            title="Too Many Requests",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None


def _failed(lockout: Lockout | None, client_id) -> None:
    if lockout is not None:
        lockout.failed(client_id)


class JWKS:
    operations = {
        "GET": Operation(
            "retrieveJwks",
            "oauth",
            "Public keys that verify access tokens",
            200,
            rs.JWKS,
            auth=False,
        )
    }

    def __init__(self, keys: SigningKeys):
        self._keys = keys

    def on_get(self, req, resp) -> None:
        resp.set_header("Cache-Control", "public, max-age=300")
        resp.media = self._keys.jwks()
