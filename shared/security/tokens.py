"""Access tokens (short-lived JWTs) and opaque secrets (refresh tokens, client secrets)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from shared.config import Settings
from shared.domain.keyring import MAX_ACCESS_TTL_S
from shared.security.signing import SigningKeys

REFRESH_PREFIX = "rt_"


def issue_access_token(
    keys: SigningKeys,
    settings: Settings,
    merchant_id: object,
    client_id: str,
    scope: str,
    *,
    now: float | None = None,
    cnf: dict | None = None,
) -> tuple[str, int]:
    """Sign an access JWT for ``merchant_id``; return ``(token, expires_in_seconds)``.

    ``cnf``: a confirmation claim (RFC 8705: the certificate the token is bound to).
    """
    ttl = min(settings.access_token_ttl_s, MAX_ACCESS_TTL_S)
    if ttl <= 0:
        raise ValueError("access_token_ttl_s must be positive")
    iat = int(time.time() if now is None else now)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        # `sub` must be a string (RFC 7519); merchant ids may be UUIDs or ints.
        "sub": str(merchant_id),
        "client_id": client_id,
        "scope": scope,
        "iat": iat,
        "nbf": iat,
        "exp": iat + ttl,
        "jti": secrets.token_urlsafe(16),
    }
    if cnf is not None:
        claims["cnf"] = cnf
    return keys.sign(claims), ttl


OPERATOR_SCOPE = "operator"


def issue_operator_token(
    keys: SigningKeys,
    settings: Settings,
    operator_id: str,
    email: str,
    role: str,
    *,
    auth_time: int,
    now: float | None = None,
) -> tuple[str, int]:
    """Sign an operator's access JWT (its own audience and ring); ``(token, expires_in)``.

    ``auth_time`` (OpenID Connect's claim) is when the operator last gave a TOTP
    code: a refresh copies it, so no chain of refreshes outlives the session limit.
    """
    ttl = min(settings.operator_token_ttl_s, MAX_ACCESS_TTL_S)
    if ttl <= 0:
        raise ValueError("operator_token_ttl_s must be positive")
    iat = int(time.time() if now is None else now)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.operator_jwt_audience,
        "sub": operator_id,
        "email": email,
        "role": role,
        "scope": OPERATOR_SCOPE,
        "auth_time": int(auth_time),
        "iat": iat,
        "nbf": iat,
        "exp": iat + ttl,
        "jti": secrets.token_urlsafe(16),
    }
    return keys.sign(claims), ttl


def new_refresh_token() -> str:
    """A new opaque refresh token: ``rt_`` + 32 random bytes, base64url."""
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret, for storage and lookup."""
    # Refresh tokens and client secrets are 256-bit random values, not human
    # passwords: guessing one is infeasible however fast the hash, so a slow
    # KDF (bcrypt, argon2) adds no security, only CPU on every token call.
    # Being unsalted and deterministic also lets the database index the hash
    # and find a token by it in one lookup.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_secret(secret: str | None, expected_hash: str | None) -> bool:
    """True if ``secret`` hashes to ``expected_hash``; compared in constant time."""
    if not secret or not expected_hash:
        return False
    # Compare bytes: compare_digest refuses non-ASCII str, and the stored hash
    # is not under our control once it has been through a database.
    return hmac.compare_digest(hash_secret(secret).encode(), expected_hash.encode("utf-8"))
