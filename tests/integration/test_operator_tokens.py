"""Operator tokens and merchant tokens are never accepted in each other's place.

A real app on the layer's database; each test makes its own operator (and
merchant). The two kinds differ in audience and signing ring, so a token of
one kind fails verification on the other's routes, whatever its claims say.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from intake.app import create_app
from shared.db.tables import operators
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_access_token
from tests.support.apiclient import OwnAddressClient
from tests.support.operators import bearer, make_operator, operator_token

pytestmark = pytest.mark.integration


@pytest.fixture
def api(settings, engine, vault):
    return OwnAddressClient(
        create_app(settings, engine=engine, dispatch=lambda *a, **k: None, vault=vault)
    )


def test_an_operator_token_reaches_operator_routes(api, settings, engine, vault):
    op = make_operator(engine, vault, "viewer")
    got = api.simulate_get("/v1/operator/me", headers=bearer(operator_token(settings, op)))
    assert got.status_code == 200, got.text
    assert got.json == {"object": "operator", "id": op.id, "email": op.email, "role": "viewer"}


def test_a_merchant_token_is_refused_on_operator_routes(api, settings, make_merchant):
    merchant = make_merchant()
    token, _ = issue_access_token(
        SigningKeys.from_settings(settings), settings, merchant["merchant_id"], "ci_x", "payments"
    )
    got = api.simulate_get("/v1/operator/me", headers=bearer(token))
    assert got.status_code == 401
    assert got.json["code"] == "invalid_token"


def test_an_operator_token_is_refused_on_merchant_routes(api, settings, engine, vault):
    op = make_operator(engine, vault, "admin")
    got = api.simulate_get("/v1/balance", headers=bearer(operator_token(settings, op)))
    assert got.status_code == 401
    assert got.json["code"] == "invalid_token"


def test_a_disabled_operator_is_refused_at_once(api, settings, engine, vault):
    op = make_operator(engine, vault, "admin")
    token = operator_token(settings, op)
    with engine.begin() as conn:
        conn.execute(update(operators).where(operators.c.id == op.id).values(disabled_at="now()"))
    got = api.simulate_get("/v1/operator/me", headers=bearer(token))
    assert got.status_code == 401
    assert "disabled" in got.json["detail"]


def test_operator_signing_keys_are_not_the_merchant_keys(settings):
    assert SigningKeys.for_operators(settings).kid != SigningKeys.from_settings(settings).kid
