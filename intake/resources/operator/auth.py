"""``/v1/operator/login``, ``/password`` and ``/refresh``: operator tokens for people.

Login and password change take no token (the body's credentials are checked);
refresh takes a valid operator token. All three answer ``Cache-Control:
no-store``, as token responses must (RFC 6749 §5.1).
"""

from __future__ import annotations

from intake.headers import no_store
from intake.openapi import LOCKED, Operation
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.services import operator_auth

LOGIN_FIELDS = {"email", "password", "totp"}
PASSWORD_FIELDS = {"email", "current_password", "new_password", "totp"}
# What these operations answer besides (or instead of) the API's usual errors.
WRONG = {
    401: "The email, password or TOTP code is not right, or the account is disabled"
    " (`invalid_credentials`, one answer for all); a replayed code is not right."
}
LOGIN_ERRORS = (
    LOCKED
    | WRONG
    | {403: "The password is temporary (`password_change_required`): change it first."}
)
PASSWORD_ERRORS = (
    LOCKED
    | WRONG
    | {
        400: "The request does not match this schema, or the new password breaks the policy"
        " (`password_too_weak`, `param` new_password; the detail says which rule)."
    }
)
REFRESH_ERRORS = {
    401: "The operator token is missing or invalid, or its login is older than"
    " OPERATOR_SESSION_MAX_S (`reauthentication_required`): log in again."
}


class Login:
    operations = {
        "POST": Operation(
            "operatorLogin",
            "operator",
            "Log in with email, password and TOTP code: a 15-minute operator token",
            200,
            rs.OperatorToken,
            body=rq.OperatorLogin,
            body_required=True,
            auth=False,
            errors=LOGIN_ERRORS,
        )
    }

    def __init__(self, engine, operator_keys, vault, settings):
        self._deps = engine, operator_keys, vault, settings

    def on_post(self, req, resp) -> None:
        body = parse(rq.OperatorLogin, req.context.body, closed(LOGIN_FIELDS))
        no_store(resp)
        resp.media = operator_auth.login(
            *self._deps,
            email=body["email"],
            password=body["password"],
            totp=body["totp"],
            source_ip=req.remote_addr,
            request_id=req.context.request_id,
        )


class Password:
    operations = {
        "POST": Operation(
            "changeOperatorPassword",
            "operator",
            "Change the password (a temporary one must be, before the first login)",
            200,
            rs.OperatorPasswordChanged,
            body=rq.OperatorPasswordChange,
            body_required=True,
            auth=False,
            errors=PASSWORD_ERRORS,
        )
    }

    def __init__(self, engine, vault, settings):
        self._deps = engine, vault, settings

    def on_post(self, req, resp) -> None:
        body = parse(rq.OperatorPasswordChange, req.context.body, closed(PASSWORD_FIELDS))
        operator_auth.change_password(
            *self._deps,
            email=body["email"],
            current_password=body["current_password"],
            new_password=body["new_password"],
            totp=body["totp"],
            source_ip=req.remote_addr,
            request_id=req.context.request_id,
        )
        no_store(resp)
        resp.media = {"object": "operator_password", "changed": True}


class Refresh:
    operator_role = "viewer"
    operations = {
        "POST": Operation(
            "refreshOperatorToken",
            "operator",
            "A new operator token for a valid one, until 12 hours after the login",
            200,
            rs.OperatorToken,
            body=rq.OperatorRefresh,
            role="viewer",
            errors=REFRESH_ERRORS,
        )
    }

    def __init__(self, engine, operator_keys, settings):
        self._deps = engine, operator_keys, settings

    def on_post(self, req, resp) -> None:
        parse(rq.OperatorRefresh, req.context.body, closed(set()))
        no_store(resp)
        resp.media = operator_auth.refresh(*self._deps, req.context.operator)
