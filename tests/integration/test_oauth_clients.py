"""API clients over real Postgres, through the falcon app in-process: refresh needs the
client, families end, secrets rotate with an overlap, and every route needs its scope.

The layer's database: every test makes its own merchant and clients, and no request
here creates an intent (the routes are exercised up to their validation or a 404).
"""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import falcon.testing
import pytest
from sqlalchemy import func, select, update

from intake.app import create_app
from shared.db.tables import api_clients, refresh_tokens
from shared.db.uow import UnitOfWork
from shared.domain.scopes import ALL_SCOPES
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_access_token
from shared.services import clients
from tests.support.apiclient import OwnAddressClient
from tests.support.waiting import until

pytestmark = pytest.mark.integration

# The contract: the scope each route needs. The app must declare exactly this.
ROUTE_SCOPES = {
    ("POST", "/v1/payment_intents"): "payment_intents:write",
    ("GET", "/v1/payment_intents"): "payment_intents:read",
    ("GET", "/v1/payment_intents/{intent_id}"): "payment_intents:read",
    ("POST", "/v1/payment_intents/{intent_id}/capture"): "payment_intents:write",
    ("POST", "/v1/payment_intents/{intent_id}/cancel"): "payment_intents:write",
    ("POST", "/v1/refunds"): "refunds:write",
    ("GET", "/v1/refunds"): "refunds:read",
    ("GET", "/v1/refunds/{refund_id}"): "refunds:read",
    ("GET", "/v1/events"): "events:read",
    ("GET", "/v1/events/{event_id}"): "events:read",
    ("POST", "/v1/events/{event_id}/redeliver"): "events:write",
    ("GET", "/v1/webhook_deliveries"): "events:read",
    ("POST", "/v1/webhook_endpoints"): "webhook_endpoints:write",
    ("GET", "/v1/webhook_endpoints"): "webhook_endpoints:read",
    ("GET", "/v1/webhook_endpoints/{endpoint_id}"): "webhook_endpoints:read",
    ("POST", "/v1/webhook_endpoints/{endpoint_id}"): "webhook_endpoints:write",
    ("DELETE", "/v1/webhook_endpoints/{endpoint_id}"): "webhook_endpoints:write",
    ("POST", "/v1/webhook_endpoints/{endpoint_id}/rotate_secret"): "webhook_endpoints:write",
    ("GET", "/v1/balance"): "balance:read",
    ("GET", "/v1/reports/daily"): "reports:read",
    ("GET", "/v1/reports/weekly"): "reports:read",
    ("GET", "/v1/reports/monthly"): "reports:read",
    ("POST", "/v1/customers/{customer}/erase"): "customers:write",
}
# Enough for each route to get past its parameters' parsing (or to a 404).
# (No test stores a report for 1100: test_period_reports.py keeps to later years.)
QUERIES = {
    "/v1/reports/daily": {"date": "2030-01-01"},
    "/v1/reports/weekly": {"week": "1100-W01"},
    "/v1/reports/monthly": {"month": "1100-01"},
}
# A listing answers 200; those periods have no report (404 resource_missing).
LISTING_STATUS = dict.fromkeys(QUERIES, 404)


@pytest.fixture(scope="module")
def keys(settings):
    return SigningKeys.from_settings(settings)


def make_app(settings, engine, keys, vault):
    app = create_app(settings, engine=engine, dispatch=lambda *a, **k: None, keys=keys, vault=vault)
    return OwnAddressClient(app)


@pytest.fixture
def api(settings, engine, keys, vault):
    return make_app(settings, engine, keys, vault)


def token(api, client: dict, **extra) -> falcon.testing.Result:
    return api.simulate_post(
        "/v1/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            **extra,
        },
    )


def refresh(api, refresh_token: str, client: dict | None, **extra) -> falcon.testing.Result:
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    if client is not None:
        body |= {"client_id": client["client_id"], "client_secret": client["client_secret"]}
    return api.simulate_post("/v1/oauth/token", json=body)


def new_client(engine, merchant_id: str, scopes=ALL_SCOPES) -> dict:
    with UnitOfWork(engine) as uow:
        made = clients.create_client(uow, merchant_id, scopes)
        uow.commit()
    return made


def problem(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json["code"] == code, resp.json
    return resp.json


def family_rows(engine, family_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id)
            .order_by(refresh_tokens.c.created_at)
        ).all()


def family_of(engine, refresh_token: str) -> str:
    from shared.security.tokens import hash_secret

    with engine.connect() as conn:
        return conn.execute(
            select(refresh_tokens.c.family_id).where(
                refresh_tokens.c.token_hash == hash_secret(refresh_token)
            )
        ).scalar_one()


# --- the refresh grant authenticates the client --------------------------------


def test_a_refresh_without_client_authentication_is_refused(api, make_merchant, engine):
    merchant = make_merchant()
    other = make_merchant()
    rt = token(api, merchant).json["refresh_token"]

    body = problem(refresh(api, rt, None), 401, "invalid_client")
    assert body["error"] == "invalid_client"  # RFC 6749 §5.2
    wrong = {**merchant, "client_secret": "cs_wrong"}
    problem(refresh(api, rt, wrong), 401, "invalid_client")
    # Another client's credentials do not make the token theirs.
    problem(refresh(api, rt, other), 400, "invalid_grant")

    # None of those spent the token: its client still rotates it (HTTP Basic too).
    basic = base64.b64encode(f"{merchant['client_id']}:{merchant['client_secret']}".encode())
    resp = api.simulate_post(
        "/v1/oauth/token",
        json={"grant_type": "refresh_token", "refresh_token": rt},
        headers={"Authorization": "Basic " + basic.decode()},
    )
    assert resp.status_code == 200, resp.text
    rows = family_rows(engine, family_of(engine, rt))
    assert len(rows) == 2 and rows[0].used_at is not None and rows[0].revoked_at is None


# --- refresh families end ------------------------------------------------------


def test_a_refresh_family_ends_at_its_absolute_lifetime(
    settings, engine, keys, vault, make_merchant
):
    ttl = 2
    api = make_app(settings.replace(refresh_family_ttl_s=ttl), engine, keys, vault)
    merchant = make_merchant()
    started = time.monotonic()
    current = token(api, merchant).json["refresh_token"]
    family = family_of(engine, current)

    def rotate():
        nonlocal current
        resp = refresh(api, current, merchant)
        if resp.status_code != 200:
            return resp
        current = resp.json["refresh_token"]
        return None

    # Rotate as fast as a client may: rotating never carries the family past its end.
    refused = until(rotate, timeout=ttl + 10, interval=0.2, what="the family's end")
    lived = time.monotonic() - started
    body = problem(refused, 400, "invalid_grant")
    assert "family has expired" in body["detail"]
    rows = family_rows(engine, family)
    assert len(rows) >= 3, "rotated a few times before the end"
    ends = {r.family_expires_at for r in rows}
    assert len(ends) == 1, "every rotation kept the family's end"
    (end,) = ends
    assert end - rows[0].created_at == timedelta(seconds=ttl)
    assert all(r.expires_at <= end for r in rows)
    assert ttl - 0.5 <= lived < ttl + 5


def test_a_family_begun_before_families_ended_gets_an_end_at_its_next_rotation(
    api, engine, make_merchant, settings
):
    merchant = make_merchant()
    rt = token(api, merchant).json["refresh_token"]
    family = family_of(engine, rt)
    with engine.begin() as conn:
        conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family)
            .values(family_expires_at=None)
        )
    resp = refresh(api, rt, merchant)
    assert resp.status_code == 200, resp.text
    newest = family_rows(engine, family)[-1]
    assert newest.family_expires_at - newest.created_at == timedelta(
        seconds=settings.refresh_family_ttl_s
    )
    # ... and past that end (moved into the past here) the family is refused.
    with engine.begin() as conn:
        conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family)
            .values(family_expires_at=func.now() - timedelta(seconds=1))
        )
    problem(refresh(api, resp.json["refresh_token"], merchant), 400, "invalid_grant")


# --- secret rotation -----------------------------------------------------------


def rotate_secret(engine, client_id: str, overlap_h: float) -> dict:
    with UnitOfWork(engine) as uow:
        out = clients.rotate_secret(uow, client_id, overlap_h)
        uow.commit()
    return out


def test_the_old_secret_works_until_the_overlap_ends(api, engine, make_merchant):
    merchant = make_merchant()
    rotated = rotate_secret(engine, merchant["client_id"], overlap_h=1)
    new = {**merchant, "client_secret": rotated["client_secret"]}
    assert rotated["client_secret"] != merchant["client_secret"]
    assert token(api, new).status_code == 200
    assert token(api, merchant).status_code == 200, "the old secret, during the overlap"
    rt = token(api, merchant).json["refresh_token"]
    assert refresh(api, rt, merchant).status_code == 200

    with engine.begin() as conn:
        conn.execute(
            update(api_clients)
            .where(api_clients.c.client_id == merchant["client_id"])
            .values(previous_secret_expires_at=func.now() - timedelta(seconds=1))
        )
    problem(token(api, merchant), 401, "invalid_client")
    assert token(api, new).status_code == 200

    # Rotating with no overlap ends the old secret at once.
    newer = {
        **merchant,
        "client_secret": rotate_secret(engine, merchant["client_id"], 0)["client_secret"],
    }
    problem(token(api, new), 401, "invalid_client")
    assert token(api, newer).status_code == 200


def test_rotating_again_ends_the_first_overlap(api, engine, make_merchant):
    merchant = make_merchant()
    second = rotate_secret(engine, merchant["client_id"], overlap_h=1)["client_secret"]
    third = rotate_secret(engine, merchant["client_id"], overlap_h=1)["client_secret"]
    problem(token(api, merchant), 401, "invalid_client")  # only one previous secret is kept
    assert token(api, {**merchant, "client_secret": second}).status_code == 200
    assert token(api, {**merchant, "client_secret": third}).status_code == 200


# --- scopes at the token endpoint ----------------------------------------------


def test_a_token_carries_the_clients_scopes_or_an_asked_subset(
    api, engine, keys, settings, make_merchant
):
    merchant = make_merchant()
    assert token(api, merchant).json["scope"] == " ".join(ALL_SCOPES)  # a merchant's first client
    reader = new_client(engine, merchant["merchant_id"], ("refunds:read", "balance:read"))

    granted = token(api, reader).json
    assert granted["scope"] == "refunds:read balance:read"
    claims = keys.verify(
        granted["access_token"], audience=settings.jwt_audience, issuer=settings.jwt_issuer
    )
    assert claims["scope"] == "refunds:read balance:read"
    assert claims["client_id"] == reader["client_id"]
    assert token(api, reader, scope="balance:read").json["scope"] == "balance:read"
    # The deprecated single scope asks for everything the client has, never more.
    assert token(api, reader, scope="payments").json["scope"] == "refunds:read balance:read"

    body = problem(token(api, reader, scope="refunds:write"), 400, "invalid_scope")
    assert "refunds:write" in body["detail"] and body["param"] == "scope"
    problem(token(api, reader, scope="everything"), 400, "invalid_scope")

    # A refresh keeps the family's scopes; `scope` narrows one access token only.
    family = token(api, reader, scope="balance:read").json
    narrowed = refresh(api, family["refresh_token"], reader).json
    assert narrowed["scope"] == "balance:read"
    problem(
        refresh(api, narrowed["refresh_token"], reader, scope="refunds:read"), 400, "invalid_scope"
    )
    wide = token(api, reader).json
    one = refresh(api, wide["refresh_token"], reader, scope="refunds:read").json
    assert one["scope"] == "refunds:read"
    assert refresh(api, one["refresh_token"], reader).json["scope"] == "refunds:read balance:read"


# --- every route needs its scope -----------------------------------------------


def _routes(app) -> dict[tuple[str, str], str | None]:
    """(method, template) -> the scope its Operation declares, for every authenticated route."""
    found = {}

    def walk(nodes):
        for node in nodes:
            resource = node.resource
            if resource is not None and getattr(resource, "auth_required", False):
                for method, op in resource.operations.items():
                    found[(method, node.uri_template)] = op.scope
            walk(node.children)

    walk(app._router._roots)
    return found


def test_the_app_declares_each_routes_scope_as_the_contract_says(api):
    assert _routes(api.app) == ROUTE_SCOPES
    assert set(ROUTE_SCOPES.values()) == set(ALL_SCOPES)


def _call(api, method: str, template: str, access_token: str):
    path = template.format(
        intent_id="pi_none",
        refund_id="re_none",
        event_id="evt_none",
        endpoint_id="we_none",
        customer="cus_none",
    )
    return api.simulate_request(
        method,
        path,
        params=QUERIES.get(template),
        json={} if method == "POST" else None,
        headers={"Authorization": f"Bearer {access_token}"},
    )


@pytest.mark.parametrize(("method", "template"), sorted(ROUTE_SCOPES))
def test_each_route_is_refused_without_its_scope_and_allowed_with_it(
    api, engine, make_merchant, method, template
):
    scope = ROUTE_SCOPES[(method, template)]
    merchant = make_merchant()
    others = [s for s in ALL_SCOPES if s != scope]
    without = token(api, merchant, scope=" ".join(others)).json["access_token"]
    only = token(api, merchant, scope=scope).json["access_token"]

    refused = _call(api, method, template, without)
    body = problem(refused, 403, "insufficient_scope")
    assert f"`{scope}`" in body["detail"]
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and f'scope="{scope}"' in challenge

    allowed = _call(api, method, template, only)
    # Past auth: answered by the route itself (a listing, a 404 for the made-up id, or
    # the empty body's 400), never refused for the token.
    assert allowed.status_code not in (401, 403) and allowed.status_code < 500, allowed.text
    if method == "GET" and "{" not in template:
        assert allowed.status_code == LISTING_STATUS.get(template, 200), allowed.text


def test_access_tokens_signed_before_scopes_existed_still_reach_every_route(
    api, keys, settings, make_merchant
):
    merchant = make_merchant()
    legacy, _ = issue_access_token(
        keys, settings, merchant["merchant_id"], merchant["client_id"], "payments"
    )
    for method, template in ROUTE_SCOPES:
        resp = _call(api, method, template, legacy)
        assert resp.status_code not in (401, 403), (method, template, resp.text)
