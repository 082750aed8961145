"""``/console/login``, ``/console/password`` and ``/console/logout``.

Logging in is ``operator_auth.login``, the operator API's own login (TOTP, replay,
lockout, audit rows); its token becomes the session cookie.
"""

from __future__ import annotations

import falcon

from intake.console import forms
from intake.console.render import page
from intake.console.session import (
    NONCE_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    redirect,
    set_cookie,
)
from intake.errors import answer_for
from shared.domain.validation import ValidationError
from shared.services import operator_auth
from shared.services.errors import ServiceError


class Login:
    console_public = True
    accepts_form = True

    def __init__(self, engine, keys, vault, settings):
        self._deps = (engine, keys, vault, settings)

    def on_get(self, req, resp) -> None:
        page(req, resp, "login.html", email="")

    def on_post(self, req, resp) -> None:
        form = forms.read(forms.Login, req.context.body)
        try:
            out = operator_auth.login(
                *self._deps,
                email=form.email,
                password=form.password,
                totp=form.totp,
                source_ip=req.remote_addr,
                request_id=req.context.request_id,
            )
        except operator_auth.PasswordChangeRequired:
            notice = (
                "Your password is temporary: choose your own. The code you just used is"
                " spent: enter the next one your authenticator shows."
            )
            page(req, resp, "password.html", status=403, email=form.email, notice=notice)
            return
        except (ServiceError, ValidationError) as exc:
            _refused(req, resp, "login.html", exc, form.email)
            return
        set_cookie(req, resp, SESSION_COOKIE, out["access_token"])
        clear_cookie(req, resp, NONCE_COOKIE)
        raise redirect("/console")


class Password:
    """The first login's password change (a temporary password answers 403 with this form)."""

    console_public = True
    accepts_form = True

    def __init__(self, engine, vault, settings):
        self._deps = (engine, vault, settings)

    def on_get(self, req, resp) -> None:
        page(req, resp, "password.html", email="")

    def on_post(self, req, resp) -> None:
        form = forms.read(forms.Password, req.context.body)
        try:
            operator_auth.change_password(
                *self._deps,
                email=form.email,
                current_password=form.current_password,
                new_password=form.new_password,
                totp=form.totp,
                source_ip=req.remote_addr,
                request_id=req.context.request_id,
            )
        except (ServiceError, ValidationError) as exc:
            _refused(req, resp, "password.html", exc, form.email)
            return
        notice = "Password changed. Log in with it and the next code of your authenticator."
        page(req, resp, "login.html", email=form.email, notice=notice)


class Logout:
    console_roles = {"GET": "viewer", "POST": "viewer"}
    accepts_form = True

    def on_get(self, req, resp) -> None:
        page(req, resp, "logout.html")

    def on_post(self, req, resp) -> None:
        # The token itself stays valid until it expires (15 minutes at most); the browser
        # forgets it now, and nothing else ever held it.
        clear_cookie(req, resp, SESSION_COOKIE)
        resp.status = falcon.HTTP_303
        resp.location = "/console/login"


def _refused(req, resp, template: str, exc, email: str) -> None:
    """The form again, with the service's refusal and the API's status for it."""
    answer = answer_for(exc)
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after:
        resp.set_header("Retry-After", str(retry_after))
    status = answer.status if answer else 400
    page(req, resp, template, status=status, email=email, error=exc.message)
