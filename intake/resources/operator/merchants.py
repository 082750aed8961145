"""``/v1/operator/merchants...``: merchants as operators manage them.

Viewers read merchants; every change needs the admin role. Each change runs
with its audit row in one transaction (``actor_of``: the operator, the
request id, the source IP). Bodies are checked as the CLI checks its
arguments, with the same rules and messages where it has them; a refused
request changes nothing and writes no row.
"""

from __future__ import annotations

from sqlalchemy import Engine

from intake.headers import no_store
from intake.listing import list_object, list_query
from intake.openapi import Operation
from intake.resources.operator.actor import actor_of
from intake.resources.operator.admin import TAG, AdminResource, fields_check
from intake.schemas import requests as rq
from intake.schemas import responses as rs
from intake.schemas.parse import closed, parse
from shared.config import Settings
from shared.domain import merchant_admin as rules
from shared.domain.limits import SCOPES as LIMIT_SCOPES
from shared.domain.validation import ValidationError
from shared.money import CURRENCIES
from shared.services import erasure, merchant_admin, merchants
from shared.services import webhook_endpoints as endpoints


def _create_check(body: object) -> dict:
    body = fields_check({"name", "webhook_url"}, ("name",))(body)
    if not isinstance(body["name"], str) or not body["name"].strip():
        # The CLI's (the service's) words for a blank name.
        raise ValidationError("name", "name must not be empty")
    return body


def _limits_check(body: object) -> dict:
    body = fields_check({"currency", "scope", *rules.LIMIT_FIELDS}, ("currency",))(body)
    currency = body["currency"]
    if not isinstance(currency, str):
        raise ValidationError("currency", "`currency` must be a string.")
    # As the CLI's --currency (any letter case) and --scope, in the service's words.
    out = {"currency": currency.upper(), "scope": body.get("scope", "merchant")}
    if out["currency"] not in CURRENCIES:
        raise ValidationError("currency", f"unknown currency {currency}")
    if out["scope"] not in LIMIT_SCOPES:
        raise ValidationError("scope", f"scope must be one of {LIMIT_SCOPES}")
    for name in rules.LIMIT_FIELDS:
        out[name] = rules.positive_limit(body.get(name), name)
    return out


def _threshold_check(body: object) -> int:
    body = fields_check({"threshold"})(body)
    return rules.threshold(body.get("threshold"))


def _url_check(body: object) -> str:
    return fields_check({"url"}, ("url",))(body)["url"]


def _overlap_check(body: object) -> float | None:
    return rules.overlap_hours(fields_check({"overlap_hours"})(body).get("overlap_hours"))


def _reason_check(body: object) -> str | None:
    return rules.reason(fields_check({"reason"})(body).get("reason"))


class Merchants(AdminResource):
    # The least role of its methods; each Operation's own role is checked (POST: admin).
    operator_role = "viewer"
    operations = {
        "GET": Operation(
            "listOperatorMerchants",
            TAG,
            "List merchants, newest first",
            200,
            rs.OperatorMerchantList,
            query=rq.Page,
            role="viewer",
        ),
        "POST": Operation(
            "createOperatorMerchant",
            TAG,
            "Create a merchant and its API client (the secrets are shown once)",
            200,
            rs.OperatorMerchantCreated,
            body=rq.OperatorCreateMerchant,
            body_required=True,
            role="admin",
        ),
    }

    def on_get(self, req, resp) -> None:
        query = parse(rq.Page, req.params, lambda p: list_query(p, {}), "The query")
        with self._new_uow() as uow:
            rows, has_more = merchant_admin.list_merchants(
                uow, limit=query["limit"], starting_after=query["starting_after"]
            )
        resp.media = list_object(rows, has_more, "/v1/operator/merchants")

    def on_post(self, req, resp) -> None:
        body = parse(rq.OperatorCreateMerchant, req.context.body, _create_check)
        no_store(resp)
        resp.media = self._run(
            lambda uow: merchants.create_merchant(
                uow,
                self._vault,
                body["name"],
                body.get("webhook_url"),
                self._settings.webhook_allow_private,
                actor=actor_of(req),
            )
        )


class Merchant(AdminResource):
    operator_role = "viewer"
    operations = {
        "GET": Operation(
            "retrieveOperatorMerchant",
            TAG,
            "A merchant: webhook URL, limits, fraud threshold, suspension, clients",
            200,
            rs.OperatorMerchant,
            query=rq.NoQuery,
            role="viewer",
        )
    }

    def on_get(self, req, resp, merchant_id: str) -> None:
        parse(rq.NoQuery, req.params, closed(set()), "The query")
        with self._new_uow() as uow:
            resp.media = merchant_admin.merchant_detail(uow, merchant_id)


def _merchant_action(
    op_id: str, summary: str, body, check, act, response=rs.OperatorMerchant, required=True
):
    """An admin's POST on one merchant: ``act(resource, uow, actor, merchant_id, value)``."""

    class Action(AdminResource):
        operations = {
            "POST": Operation(
                op_id,
                TAG,
                summary,
                200,
                response,
                body=body,
                body_required=required,
                role="admin",
            )
        }

        def on_post(self, req, resp, merchant_id: str) -> None:
            value = parse(body, req.context.body, check)
            resp.media = self._run(lambda uow: act(self, uow, actor_of(req), merchant_id, value))

    Action.__name__ = Action.__qualname__ = op_id[0].upper() + op_id[1:]
    return Action


def _limits(res, uow, actor, merchant_id, v):
    merchants.set_limits(uow, merchant_id, v.pop("currency"), v.pop("scope"), actor=actor, **v)
    return merchant_admin.merchant_detail(uow, merchant_id)


def _threshold(res, uow, actor, merchant_id, threshold):
    merchants.set_fraud_threshold(uow, merchant_id, threshold, actor=actor)
    return merchant_admin.merchant_detail(uow, merchant_id)


def _webhook_url(res, uow, actor, merchant_id, url):
    allow = res._settings.webhook_allow_private
    endpoints.set_url(uow, res._vault, merchant_id, url, allow, actor=actor)
    return merchant_admin.merchant_detail(uow, merchant_id)


def _rotate(res, uow, actor, merchant_id, overlap):
    if overlap is None:
        overlap = res._settings.webhook_rotation_overlap_h
    return endpoints.rotate_secret(uow, res._vault, merchant_id, overlap, actor=actor)


Suspend = _merchant_action(
    "suspendOperatorMerchant",
    "Suspend a merchant: its clients get 403 merchant_suspended (in-flight payments go on)",
    rq.OperatorSuspendMerchant,
    _reason_check,
    lambda res, uow, actor, mid, reason: merchant_admin.suspend(uow, actor, mid, reason),
    required=False,
)
Resume = _merchant_action(
    "resumeOperatorMerchant",
    "Lift a merchant's suspension",
    rq.OperatorResumeMerchant,
    closed(set()),
    lambda res, uow, actor, mid, _: merchant_admin.resume(uow, actor, mid),
    required=False,
)
Limits = _merchant_action(
    "setOperatorMerchantLimits",
    "Set a merchant's limits for one currency and scope (minor units; omitted: the default)",
    rq.OperatorSetLimits,
    _limits_check,
    _limits,
)
FraudThreshold = _merchant_action(
    "setOperatorMerchantFraudThreshold",
    "Set the risk score (0-100) at which a merchant's payments are blocked",
    rq.OperatorSetFraudThreshold,
    _threshold_check,
    _threshold,
)
WebhookUrl = _merchant_action(
    "setOperatorMerchantWebhookUrl",
    "Point a merchant's webhooks (pending retries too) at a new URL",
    rq.OperatorSetWebhookUrl,
    _url_check,
    _webhook_url,
)
RotateWebhookSecret = _merchant_action(
    "rotateOperatorMerchantWebhookSecret",
    "A new webhook secret (shown once); the old one also signs until the overlap ends",
    rq.OperatorRotateWebhookSecret,
    _overlap_check,
    _rotate,
    rs.OperatorWebhookSecretRotated,
    required=False,
)


class EraseCustomer(AdminResource):
    """An admin erases one of a merchant's customers, as the merchant's own API call does.

    Admin only: an erasure cannot be undone. The merchant must exist (404
    otherwise); the customer may be any id, one never seen is erased with
    nothing to erase, as on the merchant's route.
    """

    operations = {
        "POST": Operation(
            "eraseOperatorMerchantCustomer",
            TAG,
            "Erase a merchant's customer's personal data (ids, amounts and the ledger stay)",
            200,
            rs.CustomerErasure,
            body=rq.EraseCustomer,
            role="admin",
        )
    }

    def on_post(self, req, resp, merchant_id: str, customer: str) -> None:
        parse(rq.EraseCustomer, req.context.body, closed(set()))

        def erase(uow):
            merchants.require_merchant(uow, merchant_id)
            return erasure.erase_customer(uow, self._vault, merchant_id, customer, actor_of(req))

        resp.media = self._run(erase)


def routes(engine: Engine, vault, settings: Settings) -> list[tuple[str, object]]:
    """The routes of this module, for intake/app.py."""
    deps = (engine, vault, settings)
    base = "/v1/operator/merchants/{merchant_id}"
    return [
        ("/v1/operator/merchants", Merchants(*deps)),
        (base, Merchant(*deps)),
        (f"{base}/suspend", Suspend(*deps)),
        (f"{base}/resume", Resume(*deps)),
        (f"{base}/limits", Limits(*deps)),
        (f"{base}/fraud_threshold", FraudThreshold(*deps)),
        (f"{base}/webhook_url", WebhookUrl(*deps)),
        (f"{base}/rotate_webhook_secret", RotateWebhookSecret(*deps)),
        (f"{base}/customers/{{customer}}/erase", EraseCustomer(*deps)),
    ]
