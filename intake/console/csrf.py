"""CSRF tokens of the console's forms: a keyed MAC of what the browser's cookie holds.

A signed-in form carries the MAC of the session (the operator's id and the time of the
login with TOTP, both in the session token, so the token stays the same when the session
cookie is renewed); the login and password forms, before any session, carry the MAC of a
random nonce in a cookie of their own. A cross-site page can neither read the cookie nor
compute the MAC (the key is the server's), so it cannot forge a form's token; the
SameSite=Strict cookies are a second, independent defence.

The MAC is the vault's keyed fingerprint (HMAC-SHA256, the same key in every API process),
over inputs a card number can never be: ``console-csrf:...`` has letters in it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable

FIELD = "csrf"
Mac = Callable[[str], str]


def for_session(mac: Mac, claims: dict) -> str:
    """The token of every form of the signed-in session ``claims`` describe."""
    return mac(f"console-csrf:session:{claims['sub']}:{int(claims.get('auth_time', 0))}")


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def for_nonce(mac: Mac, nonce: str) -> str:
    """The token of the forms shown before a session (login, password change)."""
    return mac(f"console-csrf:login:{nonce}")


def matches(sent: object, expected: str) -> bool:
    """Constant-time comparison; anything but a non-empty string never matches."""
    if not isinstance(sent, str) or not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())
