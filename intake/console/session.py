"""The console's session cookie, its CSRF checks and its response headers (a middleware).

The session cookie holds an operator token, the same kind the operator API takes as a
Bearer token, checked by the same code (``Auth.operator_claims``: signature, audience,
expiry, a disabled account), so the console can do nothing the API would refuse.
Resources opt in with class attributes:

- ``console_roles = {"GET": "viewer", "POST": "support"}``: a signed-in page; each method
  names the least role that may call it (shared/domain/operators.py), a method not named
  needs ``admin``. No valid session: 303 to the login page. Every POST carries the
  session's CSRF token, else 403 and nothing done.
- ``console_public = True``: the login and password pages; every POST carries the token
  bound to the pre-session cookie.
"""

from __future__ import annotations

import json
import re
import time

import falcon

from intake.console import csrf
from intake.console.render import page
from intake.errors import ApiError
from intake.middleware import Auth, bind_operator
from shared.config import Settings
from shared.domain.operators import role_allows
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_operator_token

PREFIX = "/console"
LOGIN = "/console/login"
SESSION_COOKIE = "clearhouse_console"
NONCE_COOKIE = "clearhouse_console_login"
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
# Every console response, errors and the stylesheet included. No script-src: the console
# serves no JavaScript at all, so the default 'none' forbids every script.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def set_cookie(req, resp, name: str, value: str) -> None:
    """A console cookie: HttpOnly, SameSite=Strict, Path=/console, Secure over TLS."""
    resp.set_cookie(
        name,
        value,
        path=PREFIX,
        secure=req.scheme == "https",
        http_only=True,
        same_site="Strict",
    )


def clear_cookie(req, resp, name: str) -> None:
    resp.unset_cookie(name, path=PREFIX, same_site="Strict")


def redirect(to: str) -> falcon.HTTPSeeOther:
    return falcon.HTTPSeeOther(to)


class Console:
    """Session, roles, CSRF and headers of the ``/console`` pages."""

    def __init__(self, auth: Auth, keys: SigningKeys, settings: Settings, mac: csrf.Mac):
        self._auth = auth
        self._keys = keys
        self._settings = settings
        self._mac = mac

    def process_resource(self, req, resp, resource, params) -> None:
        if resource is None or not is_console(req.path):
            return
        roles = getattr(resource, "console_roles", None)
        if roles is not None:
            self._signed_in(req, resp, roles.get(req.method, "admin"))
        elif getattr(resource, "console_public", False):
            self._before_session(req, resp)

    def _signed_in(self, req, resp, needed: str) -> None:
        token = req.get_cookie_values(SESSION_COOKIE)
        try:
            claims = self._auth.operator_claims(token[0] if token else "")
        except ApiError:
            # Expired, forged, of a disabled operator, or none: sign in again.
            clear_cookie(req, resp, SESSION_COOKIE)
            raise redirect(LOGIN) from None
        bind_operator(req, claims)
        req.context.csrf = csrf.for_session(self._mac, claims)
        if not role_allows(claims.get("role"), needed):
            raise ApiError(
                403,
                "insufficient_role",
                f"This needs the {needed} role (or a higher one); you are {claims.get('role')}.",
            )
        if req.method == "POST":
            self._check_csrf(req, req.context.csrf)
        self._renew(req, resp, claims)

    def _before_session(self, req, resp) -> None:
        sent = req.get_cookie_values(NONCE_COOKIE)
        nonce = sent[0] if sent and _NONCE.fullmatch(sent[0]) else None
        if req.method == "POST":
            self._check_csrf(req, csrf.for_nonce(self._mac, nonce) if nonce else "")
        if nonce is None:
            nonce = csrf.new_nonce()
            set_cookie(req, resp, NONCE_COOKIE, nonce)
        req.context.csrf = csrf.for_nonce(self._mac, nonce)

    def _check_csrf(self, req, expected: str) -> None:
        body = req.context.body if isinstance(req.context.body, dict) else {}
        if not csrf.matches(body.get(csrf.FIELD), expected):
            raise ApiError(
                403,
                "csrf_failed",
                "This form's security token is missing or wrong (was the page open too long,"
                " or sent from another site?). Nothing was changed: reload and try again.",
            )

    def _renew(self, req, resp, claims: dict) -> None:
        # Operator tokens live 15 minutes; a console in use gets a fresh one when half of
        # that is gone, with the same auth_time, so none outlives the session limit: then
        # the operator logs in again with a TOTP code.
        now = time.time()
        left = int(claims.get("exp", 0)) - now
        auth_time = int(claims.get("auth_time", 0))
        if left * 2 >= self._settings.operator_token_ttl_s:
            return
        if now - auth_time >= self._settings.operator_session_max_s:
            return
        token, _ = issue_operator_token(
            self._keys,
            self._settings,
            claims["sub"],
            str(claims.get("email", "")),
            claims["role"],
            auth_time=auth_time,
        )
        set_cookie(req, resp, SESSION_COOKIE, token)

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        if is_console(req.path):
            resp.set_headers(HEADERS)


def error_page(api_handler):
    """The app's error handler, answering console paths with an HTML page instead."""

    def handle(req, resp, exc, params) -> None:
        api_handler(req, resp, exc, params)  # status, headers, logging: as for the API
        if not is_console(req.path):
            return
        problem = json.loads(resp.data or b"{}")
        resp.data = None
        page(req, resp, "error.html", status=problem.get("status", 500), problem=problem)

    return handle
