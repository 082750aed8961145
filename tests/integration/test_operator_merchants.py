"""The operator API for merchants and operator accounts, and merchant suspension.

A real app on the layer's database; each test makes its own operators and
merchants and reads only their rows (the audit trail by target). Every
change is checked for its audit row (actor, request id, source IP,
before/after, no secret); every refusal for changing nothing and writing
no row.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import asdict
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from intake.app import create_app
from shared.db.tables import audit_log, merchant_limits, merchants, operators, webhook_endpoints
from shared.db.uow import UnitOfWork
from shared.services import merchant_admin
from shared.services.audit import Actor
from shared.services.errors import ServiceError
from tests.support.apiclient import OwnAddressClient
from tests.support.operators import bearer, make_operator, operator_token
from tests.support.waiting import until

pytestmark = pytest.mark.integration

PROMISED_S = 5  # a suspension reaches the API within this (the list is reread every 1 s)
ADMIN_POSTS = (
    "/suspend",
    "/resume",
    "/limits",
    "/fraud_threshold",
    "/webhook_url",
    "/rotate_webhook_secret",
    "/customers/cus_any/erase",
)


@pytest.fixture
def api(settings, engine, vault):
    return OwnAddressClient(
        create_app(settings, engine=engine, dispatch=lambda *a, **k: None, vault=vault)
    )


@pytest.fixture
def admin(settings, engine, vault):
    """An admin, with the headers of a token of its own (``.headers``)."""
    op = make_operator(engine, vault, "admin")
    return SimpleNamespace(**asdict(op), headers=bearer(operator_token(settings, op)))


def headers_of(settings, engine, vault, role: str) -> dict:
    return bearer(operator_token(settings, make_operator(engine, vault, role)))


def rows_for(engine, target: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(audit_log).where(audit_log.c.target == target).order_by(audit_log.c.id)
        ).all()


def merchant_row(engine, merchant_id: str):
    with engine.connect() as conn:
        return conn.execute(select(merchants).where(merchants.c.id == merchant_id)).one()


def endpoints_of(engine, merchant_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(webhook_endpoints).where(webhook_endpoints.c.merchant_id == merchant_id)
        ).all()


def post(api, path: str, op, body: dict | None = None, rid: str | None = None):
    headers = dict(op.headers)
    if rid:
        headers["X-Request-Id"] = rid
    return api.simulate_post(path, headers=headers, json=body)


def refused(got, status: int, code: str, param: str | None = None, says: str = ""):
    assert got.status_code == status, got.text
    assert got.headers["content-type"].startswith("application/problem+json")
    assert got.json["code"] == code, got.json
    if param is not None:
        assert got.json["param"] == param, got.json
    assert says in got.json["detail"], got.json


def merchant_token(api, merchant: dict):
    return api.simulate_post(
        "/v1/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": merchant["client_id"],
            "client_secret": merchant["client_secret"],
        },
    )


def test_a_viewer_lists_and_reads_merchants_without_any_secret(
    api, settings, engine, vault, make_merchant
):
    viewer = headers_of(settings, engine, vault, "viewer")
    make_merchant("oldest shop")  # so that the page after `older` is not the last
    older = make_merchant("older shop")
    newer = make_merchant("newer shop", "http://127.0.0.1:9/hooks?token=abc")
    got = api.simulate_get("/v1/operator/merchants", headers=viewer, params={"limit": "100"})
    assert got.status_code == 200, got.text
    ids = [m["id"] for m in got.json["data"]]
    assert ids.index(newer["merchant_id"]) < ids.index(older["merchant_id"])  # newest first
    assert got.json["url"] == "/v1/operator/merchants"
    page = api.simulate_get(
        "/v1/operator/merchants",
        headers=viewer,
        params={"limit": "1", "starting_after": newer["merchant_id"]},
    )
    assert page.status_code == 200 and page.json["has_more"] is True, page.text
    assert [m["id"] for m in page.json["data"]] == [older["merchant_id"]]
    (summary,) = [m for m in got.json["data"] if m["id"] == newer["merchant_id"]]
    assert summary["name"] == "newer shop" and summary["suspended"] is False

    detail = api.simulate_get(f"/v1/operator/merchants/{newer['merchant_id']}", headers=viewer)
    assert detail.status_code == 200, detail.text
    body = detail.json
    assert body["object"] == "merchant" and body["name"] == "newer shop"
    # Where webhooks go, not how they authenticate.
    assert body["webhook_url"] == "http://127.0.0.1:9/hooks?***"
    assert body["fraud_block_threshold"] is None and body["limits"] == []
    assert body["suspended_at"] is None and body["suspended_reason"] is None
    assert [c["client_id"] for c in body["clients"]] == [newer["client_id"]]
    text = json.dumps(body)
    for secret in (newer["client_secret"], newer["webhook_secret"], "token=abc"):
        assert secret not in text

    refused(
        api.simulate_get("/v1/operator/merchants/mch_none", headers=viewer),
        404,
        "resource_missing",
        says="No such merchant: 'mch_none'",
    )
    cursor = api.simulate_get(
        "/v1/operator/merchants", headers=viewer, params={"starting_after": "mch_none"}
    )
    refused(cursor, 404, "resource_missing", "starting_after")
    bad = api.simulate_get("/v1/operator/merchants", headers=viewer, params={"limit": "0"})
    refused(bad, 400, "parameter_invalid", "limit")
    assert api.simulate_get("/v1/operator/merchants").status_code == 401


def test_support_and_viewer_get_insufficient_role_on_every_admin_route(
    api, settings, engine, vault, make_merchant
):
    mid = make_merchant()["merchant_id"]
    routes = [("POST", "/v1/operator/merchants")]
    routes += [("POST", f"/v1/operator/merchants/{mid}{tail}") for tail in ADMIN_POSTS]
    routes += [
        ("GET", "/v1/operator/operators"),
        ("POST", "/v1/operator/operators"),
        ("POST", "/v1/operator/operators/op_none/disable"),
    ]
    before = merchant_row(engine, mid)
    for role in ("support", "viewer"):
        headers = headers_of(settings, engine, vault, role)
        for method, path in routes:
            got = api.simulate_request(method, path, headers=headers, json={})
            refused(got, 403, "insufficient_role", says="needs the `admin` role")
    assert merchant_row(engine, mid) == before
    assert rows_for(engine, mid) == []


def test_an_admin_creates_a_merchant_whose_credentials_are_shown_once_and_audited(
    api, admin, engine
):
    name = f"api shop {secrets.token_hex(4)}"
    got = post(api, "/v1/operator/merchants", admin, {"name": name}, rid="req_create_merchant")
    assert got.status_code == 200, got.text
    made = got.json
    assert set(made) == {"merchant_id", "client_id", "client_secret", "webhook_secret"}
    assert got.headers["cache-control"] == "no-store"
    assert merchant_token(api, made).status_code == 200  # the credentials work

    (row,) = rows_for(engine, made["merchant_id"])
    assert (row.actor, row.action) == (f"operator:{admin.email}", "merchant.create")
    assert (row.request_id, row.source_ip) == ("req_create_merchant", api.remote_addr)
    assert row.before is None
    assert row.after == {
        "id": made["merchant_id"],
        "name": name,
        "webhook_url": None,
        "client_id": made["client_id"],
    }
    assert made["client_secret"] not in str(row) and made["webhook_secret"] not in str(row)

    def count() -> tuple[int, int]:
        with engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(merchants)).scalar_one(),
                conn.execute(select(func.count()).select_from(audit_log)).scalar_one(),
            )

    before = count()
    path = "/v1/operator/merchants"
    refused(post(api, path, admin, {"name": "  "}), 400, "parameter_invalid", "name", "empty")
    refused(post(api, path, admin, {}), 400, "parameter_missing", "name")
    refused(post(api, path, admin, {"name": 7}), 400, "parameter_invalid", "name")
    refused(post(api, path, admin, {"name": "x", "nope": 1}), 400, "parameter_unknown", "nope")
    refused(
        post(api, path, admin, {"name": "x", "webhook_url": "ftp://example.com/h"}),
        400,
        "invalid_request",
        "webhook_url",
        "webhook URL refused",
    )
    assert count() == before


def test_limits_threshold_and_webhook_changes_are_audited_with_before_and_after(
    api, admin, engine, make_merchant
):
    merchant = make_merchant(webhook_url="http://127.0.0.1:9/old")
    mid = merchant["merchant_id"]
    base = f"/v1/operator/merchants/{mid}"

    got = post(api, f"{base}/limits", admin, {"currency": "usd", "daily": 5000})
    assert got.status_code == 200, got.text
    assert got.json["limits"] == [
        {"currency": "USD", "scope": "merchant", "per_transaction": None, "daily": 5000,
         "monthly": None}
    ]  # fmt: skip
    got = post(api, f"{base}/limits", admin, {"currency": "USD", "daily": 7000, "monthly": 9000})
    assert got.status_code == 200, got.text
    got = post(api, f"{base}/fraud_threshold", admin, {"threshold": 40})
    assert got.status_code == 200 and got.json["fraud_block_threshold"] == 40, got.text
    got = post(api, f"{base}/webhook_url", admin, {"url": "http://127.0.0.1:9/new?key=s3"})
    assert got.status_code == 200 and got.json["webhook_url"] == "http://127.0.0.1:9/new?***"
    (first,) = endpoints_of(engine, mid)  # the merchant's first endpoint
    assert first.url == "http://127.0.0.1:9/new?key=s3"
    got = post(api, f"{base}/rotate_webhook_secret", admin, {"overlap_hours": 2})
    assert got.status_code == 200, got.text
    rotated = got.json
    assert rotated["webhook_secret"].startswith("whsec_")
    assert rotated["previous_secret_expires_at"] is not None
    detail = api.simulate_get(base, headers=admin.headers).json
    assert detail["webhook_secret_previous_expires_at"] is not None

    rows = rows_for(engine, mid)
    assert [r.action for r in rows] == [
        "merchant.set_limits",
        "merchant.set_limits",
        "merchant.set_fraud_threshold",
        "merchant.set_webhook_url",
        "merchant.rotate_webhook_secret",
    ]
    assert {r.actor for r in rows} == {f"operator:{admin.email}"}
    assert {r.source_ip for r in rows} == {api.remote_addr}
    usd = {"currency": "USD", "scope": "merchant"}
    assert rows[0].before is None
    assert rows[0].after == usd | {"per_transaction": None, "daily": 5000, "monthly": None}
    assert rows[1].before == rows[0].after
    assert rows[1].after == usd | {"per_transaction": None, "daily": 7000, "monthly": 9000}
    assert (rows[2].before, rows[2].after) == (
        {"fraud_block_threshold": None},
        {"fraud_block_threshold": 40},
    )
    assert (rows[3].before, rows[3].after) == (
        {"webhook_url": "http://127.0.0.1:9/old"},
        {"webhook_url": "http://127.0.0.1:9/new?***"},
    )
    assert rows[4].before == {"previous_secret_expires_at": None}
    assert rows[4].after["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]
    text = str([(r.before, r.after) for r in rows])
    for secret in (rotated["webhook_secret"], merchant["webhook_secret"], "key=s3"):
        assert secret not in text


@pytest.mark.parametrize(
    "tail, body, code, param, says",
    [
        ("/limits", {"currency": "XXX"}, "parameter_invalid", "currency", "unknown currency XXX"),
        ("/limits", {}, "parameter_missing", "currency", "Missing required param: currency"),
        ("/limits", {"currency": "USD", "scope": "x"}, "parameter_invalid", "scope", "scope must"),
        ("/limits", {"currency": "USD", "daily": 0}, "parameter_invalid", "daily", "positive"),
        ("/limits", {"currency": "USD", "daily": 1.5}, "parameter_invalid", "daily", "positive"),
        ("/fraud_threshold", {"threshold": 101}, "parameter_invalid", "threshold", "0 to 100"),
        ("/fraud_threshold", {"threshold": "5"}, "parameter_invalid", "threshold", "0 to 100"),
        ("/fraud_threshold", {}, "parameter_missing", "threshold", "Missing required"),
        ("/webhook_url", {"url": "gopher://x/"}, "invalid_request", "url", "URL refused"),
        ("/webhook_url", {}, "parameter_missing", "url", "Missing required param: url"),
        ("/rotate_webhook_secret", {"overlap_hours": -1}, "parameter_invalid", "overlap_hours",
         "non-negative"),
        ("/suspend", {"reason": "x" * 501}, "parameter_invalid", "reason", "at most 500"),
        ("/suspend", {"why": "x"}, "parameter_unknown", "why", "unknown parameter"),
        ("/resume", {}, "invalid_request", "merchant_id", "is not suspended"),
    ],
)  # fmt: skip
def test_a_bad_request_changes_nothing_and_writes_no_audit_row(
    api, admin, engine, make_merchant, tail, body, code, param, says
):
    mid = make_merchant()["merchant_id"]
    before = merchant_row(engine, mid), endpoints_of(engine, mid)
    got = post(api, f"/v1/operator/merchants/{mid}{tail}", admin, body)
    refused(got, 400, code, param, says)
    assert (merchant_row(engine, mid), endpoints_of(engine, mid)) == before
    with engine.connect() as conn:
        limits = conn.execute(
            select(merchant_limits).where(merchant_limits.c.merchant_id == mid)
        ).all()
    assert limits == [] and rows_for(engine, mid) == []


def test_each_admin_route_answers_404_for_an_unknown_merchant(api, admin):
    bodies = {"/limits": {"currency": "USD"}, "/fraud_threshold": {"threshold": 1}}
    bodies["/webhook_url"] = {"url": "http://127.0.0.1:9/h"}
    for tail in ADMIN_POSTS:
        got = post(api, f"/v1/operator/merchants/mch_none{tail}", admin, bodies.get(tail, {}))
        refused(got, 404, "resource_missing", says="No such merchant: 'mch_none'")


def test_a_suspended_merchants_clients_are_refused_until_it_is_resumed(
    api, admin, engine, make_merchant
):
    merchant, bystander = make_merchant(), make_merchant()
    mid = merchant["merchant_id"]
    issued = merchant_token(api, merchant)
    assert issued.status_code == 200, issued.text
    existing = bearer(issued.json["access_token"])  # issued before the suspension
    other = bearer(merchant_token(api, bystander).json["access_token"])
    assert api.simulate_get("/v1/balance", headers=existing).status_code == 200

    got = post(api, f"/v1/operator/merchants/{mid}/suspend", admin, {"reason": "chargebacks"})
    assert got.status_code == 200, got.text
    assert got.json["suspended"] is True and got.json["suspended_reason"] == "chargebacks"

    def refused_now():
        r = api.simulate_get("/v1/balance", headers=existing)
        return r if r.status_code == 403 else None

    r = until(refused_now, timeout=PROMISED_S, what="the existing token to be refused")
    refused(r, 403, "merchant_suspended", says=f"Merchant {mid} is suspended")
    # Every merchant route, not only the balance.
    refused(api.simulate_get("/v1/payment_intents", headers=existing), 403, "merchant_suspended")
    # No new token: the token endpoint reads the merchant in its own transaction.
    refused(merchant_token(api, merchant), 403, "merchant_suspended")
    assert api.simulate_get("/v1/balance", headers=other).status_code == 200  # only this one
    again = post(api, f"/v1/operator/merchants/{mid}/suspend", admin, {})
    refused(again, 400, "invalid_request", "merchant_id", "already suspended")

    got = post(api, f"/v1/operator/merchants/{mid}/resume", admin, rid="req_resume")
    assert got.status_code == 200 and got.json["suspended"] is False, got.text
    until(
        lambda: api.simulate_get("/v1/balance", headers=existing).status_code == 200,
        timeout=PROMISED_S,
        what="the existing token to be accepted again",
    )
    assert merchant_token(api, merchant).status_code == 200

    suspend, resume = rows_for(engine, mid)
    assert (suspend.action, resume.action) == ("merchant.suspend", "merchant.resume")
    assert suspend.before == {"suspended_at": None, "suspended_reason": None}
    assert suspend.after["suspended_reason"] == "chargebacks" and suspend.after["suspended_at"]
    assert resume.before == suspend.after and resume.request_id == "req_resume"
    assert resume.after == {"suspended_at": None, "suspended_reason": None}


def test_an_admin_lists_creates_and_disables_operators(api, settings, admin, engine, vault):
    listed = api.simulate_get("/v1/operator/operators", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    (me,) = [o for o in listed.json["data"] if o["id"] == admin.id]
    assert me == {
        "id": admin.id, "object": "operator", "email": admin.email, "role": "admin",
        "password_temporary": False, "disabled": False, "disabled_at": None,
        "created": me["created"],
    }  # fmt: skip
    assert "password_hash" not in listed.text and admin.totp_secret not in listed.text

    email = f"new-{secrets.token_hex(4)}@example.com"
    got = post(api, "/v1/operator/operators", admin, {"email": email, "role": "support"}, "req_o")
    assert got.status_code == 200, got.text
    enrolment = got.json
    assert set(enrolment) == {"email", "role", "otpauth_uri", "temporary_password"}
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/") and enrolment["role"] == "support"
    (created,) = rows_for(engine, email)
    assert (created.actor, created.action) == (f"operator:{admin.email}", "operator.create")
    assert (created.request_id, created.source_ip) == ("req_o", api.remote_addr)
    assert enrolment["temporary_password"] not in str(created)

    def operator_count() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(operators)).scalar_one()

    count = operator_count()
    path = "/v1/operator/operators"
    refused(post(api, path, admin, {"email": email, "role": "root"}), 400, "parameter_invalid",
            "role")  # fmt: skip
    refused(post(api, path, admin, {"email": "nobody", "role": "viewer"}), 400, "invalid_request",
            "email", "not an email address")  # fmt: skip
    refused(post(api, path, admin, {"email": email, "role": "viewer"}), 400, "invalid_request",
            "email", "exists")  # fmt: skip
    refused(post(api, path, admin, {"role": "viewer"}), 400, "parameter_missing", "email")
    assert operator_count() == count and len(rows_for(engine, email)) == 1

    target = make_operator(engine, vault, "viewer")
    token = bearer(operator_token(settings, target))
    assert api.simulate_get("/v1/operator/me", headers=token).status_code == 200
    got = post(api, f"/v1/operator/operators/{target.id}/disable", admin)
    assert got.status_code == 200 and got.json["disabled"] is True, got.text
    refused(api.simulate_get("/v1/operator/me", headers=token), 401, "invalid_token")
    (disabled,) = [r for r in rows_for(engine, target.email) if r.action == "operator.disable"]
    assert disabled.actor == f"operator:{admin.email}" and disabled.source_ip == api.remote_addr
    again = post(api, f"/v1/operator/operators/{target.id}/disable", admin)
    refused(again, 400, "invalid_request", "email", "already disabled")
    missing = post(api, "/v1/operator/operators/op_none/disable", admin)
    refused(missing, 404, "resource_missing", "operator_id")


def test_two_racing_suspensions_suspend_once_and_write_one_row(engine, make_merchant):
    mid = make_merchant()["merchant_id"]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def suspend(who: str) -> None:
        start.wait(timeout=10)
        try:
            with UnitOfWork(engine) as uow:
                merchant_admin.suspend(uow, Actor(who), mid, who)
                uow.commit()
            outcomes.append("suspended")
        except ServiceError as exc:
            outcomes.append(exc.message)

    threads = [threading.Thread(target=suspend, args=(f"test:{n}",)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == [f"merchant {mid} is already suspended", "suspended"]
    (row,) = rows_for(engine, mid)
    assert row.action == "merchant.suspend"
    assert merchant_row(engine, mid).suspended_reason == row.after["suspended_reason"]
