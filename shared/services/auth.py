"""OAuth 2 client credentials with rotating refresh tokens (families, reuse detection).

Only hashes of client secrets and refresh tokens are stored. A refresh token
is good for one use: using it again means it leaked, so its whole family
(every token descended from the same login) is revoked (OAuth 2.0 Security
BCP §4.14). A family also has an absolute end (``REFRESH_FAMILY_TTL_S``):
rotating never carries one login past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update

from shared.config import Settings
from shared.db.tables import api_clients
from shared.db.tables import refresh_tokens as rt
from shared.db.uow import UnitOfWork
from shared.domain import cert_binding
from shared.domain import scopes as S
from shared.security.signing import SigningKeys
from shared.security.tokens import (
    hash_secret,
    issue_access_token,
    new_refresh_token,
    verify_secret,
)
from shared.services.errors import ServiceError
from shared.services.ids import new_id
from shared.services.suspensions import ensure_not_suspended

# Compared against when the client id is unknown, so both paths cost the same.
_DUMMY_HASH = hash_secret("not-a-client-secret")


class OAuthError(ServiceError):
    """An RFC 6749 §5.2 error; ``code`` is the OAuth error code."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message, param)
        self.code = code


class InvalidClient(OAuthError):
    """Client authentication failed (unknown client, wrong secret, revoked client)."""

    def __init__(self, message: str = "Client authentication failed."):
        super().__init__("invalid_client", message)


class RefreshTokenReused(OAuthError):
    """Raised after the family was revoked: the caller must commit, then respond."""


def authenticate_client(uow: UnitOfWork, client_id: str | None, client_secret: str | None):
    """The active api_clients row for these credentials, or InvalidClient.

    During a secret rotation's overlap the previous secret is accepted too.
    """
    row = None
    if client_id:
        previous_live = api_clients.c.previous_secret_expires_at > func.now()
        row = uow.conn.execute(
            select(api_clients, previous_live.label("previous_live")).where(
                api_clients.c.client_id == client_id, api_clients.c.revoked_at.is_(None)
            )
        ).first()
    current = verify_secret(client_secret, row.secret_hash if row else _DUMMY_HASH)
    previous = verify_secret(
        client_secret,
        row.previous_secret_hash if row is not None and row.previous_live else _DUMMY_HASH,
    )
    if row is None or not (current or previous):
        raise InvalidClient()
    return row


def client_credentials(
    uow: UnitOfWork,
    keys: SigningKeys,
    settings: Settings,
    client_id,
    client_secret,
    scope=None,
    *,
    peer_cert: bytes | None = None,
) -> dict:
    """Issue an access token and a new refresh-token family to an authenticated client.

    ``peer_cert``: the DER certificate the TLS client presented (None: none).
    """
    client = authenticate_client(uow, client_id, client_secret)
    # Only an authenticated client learns that its merchant is suspended.
    ensure_not_suspended(uow, client.merchant_id)
    granted = _grant(client.scopes.split(), scope)
    cnf = _confirmation(client, peer_cert)
    now = uow.conn.execute(select(func.now())).scalar_one()
    family = Family(new_id("rtf"), granted, now + timedelta(seconds=settings.refresh_family_ttl_s))
    return _issue(uow, keys, settings, client, family, granted, now, cnf)


def _confirmation(client, peer_cert: bytes | None) -> dict | None:
    """A bound client's ``cnf`` claim, if it presented its certificate (RFC 8705 §3)."""
    if client.cert_sha256 is None:
        return None
    if not cert_binding.presented_matches(client.cert_sha256, peer_cert):
        raise InvalidClient("This client must present its bound TLS client certificate.")
    return cert_binding.confirmation(client.cert_sha256)


def refresh(
    uow: UnitOfWork,
    keys: SigningKeys,
    settings: Settings,
    token,
    client_id=None,
    client_secret=None,
    scope=None,
    *,
    peer_cert: bytes | None = None,
) -> dict:
    """Rotate a refresh token: the old one is spent, a new one joins its family.

    The client must authenticate (RFC 6749 §6): a refresh token alone, stolen,
    mints nothing. The family keeps its scopes (less any the client has lost
    since); ``scope`` may narrow this one access token.
    """
    if not token or not isinstance(token, str):
        raise OAuthError(
            "invalid_request", "Missing required param: refresh_token.", param="refresh_token"
        )
    client = authenticate_client(uow, client_id, client_secret)
    ensure_not_suspended(uow, client.merchant_id)
    now = uow.conn.execute(select(func.now())).scalar_one()
    # FOR UPDATE: two concurrent uses of one token serialize; the second sees used_at.
    row = uow.conn.execute(
        select(rt).where(rt.c.token_hash == hash_secret(token)).with_for_update()
    ).first()
    invalid = OAuthError("invalid_grant", "The refresh token is invalid, expired or revoked.")
    if row is None or row.revoked_at is not None or client.client_id != row.client_id:
        raise invalid
    if row.family_expires_at is not None and row.family_expires_at <= now:
        raise OAuthError(
            "invalid_grant", "The refresh token's family has expired: authenticate again."
        )
    if row.expires_at <= now:
        raise invalid
    if row.used_at is not None:
        revoke_family(uow, row.family_id)
        raise RefreshTokenReused("invalid_grant", "The refresh token was already used.")
    cnf = _confirmation(client, peer_cert)
    uow.conn.execute(update(rt).where(rt.c.token_hash == row.token_hash).values(used_at=now))
    kept = S.claim_scopes(row.scope) & set(client.scopes.split())
    family = Family(
        row.family_id,
        S.canonical(kept),
        # A family begun before families had an end gets one now.
        row.family_expires_at or now + timedelta(seconds=settings.refresh_family_ttl_s),
    )
    return _issue(uow, keys, settings, client, family, _grant(family.scopes, scope), now, cnf)


def revoke(uow: UnitOfWork, token, client_id: str | None = None) -> None:
    """Revoke the family of a refresh token; unknown tokens are ignored (RFC 7009)."""
    if not token or not isinstance(token, str):
        return
    row = uow.conn.execute(select(rt).where(rt.c.token_hash == hash_secret(token))).first()
    if row is None or (client_id is not None and row.client_id != client_id):
        return
    revoke_family(uow, row.family_id)


def revoke_family(uow: UnitOfWork, family_id: str) -> int:
    """Revoke every live token of a family; return how many."""
    return uow.conn.execute(
        update(rt)
        .where(rt.c.family_id == family_id, rt.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    ).rowcount


@dataclass(frozen=True)
class Family:
    """A refresh-token family: one login's tokens, their scopes and their common end."""

    id: str
    scopes: tuple[str, ...]
    expires_at: datetime


def _grant(allowed, requested) -> tuple[str, ...]:
    try:
        return S.grant(allowed, requested)
    except S.ScopeError as exc:
        raise OAuthError("invalid_scope", f"{exc}.", param="scope") from None


def _issue(uow, keys, settings, client, family: Family, scopes, now, cnf=None) -> dict:
    scope = S.text(scopes)
    access, expires_in = issue_access_token(
        keys, settings, client.merchant_id, client.client_id, scope, cnf=cnf
    )
    refresh_token = new_refresh_token()
    uow.conn.execute(
        insert(rt).values(
            token_hash=hash_secret(refresh_token),
            family_id=family.id,
            client_id=client.client_id,
            merchant_id=client.merchant_id,
            scope=S.text(family.scopes),
            expires_at=min(
                now + timedelta(seconds=settings.refresh_token_ttl_s), family.expires_at
            ),
            family_expires_at=family.expires_at,
        )
    )
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
        "refresh_token": refresh_token,
    }
