"""Tokens: fetched with the client's credentials, reused, refreshed, replaced when refused."""

from __future__ import annotations

import pytest

from clearhouse_client import AuthenticationError, PermissionDeniedError
from conftest import TOKEN_PATH, Answer, intent, problem

ITEM = "/v1/payment_intents/pi_1"


def test_one_token_serves_many_calls_as_a_bearer(api, make_client):
    api.defaults[ITEM] = Answer(200, intent())
    client = make_client()
    for _ in range(3):
        client.payment_intents.retrieve("pi_1")
    (grant,) = api.requests(TOKEN_PATH)
    assert grant.body == {
        "grant_type": "client_credentials",
        "client_id": "ci_test",
        "client_secret": "cs_test",
    }
    assert "authorization" not in grant.headers
    assert {s.headers["authorization"] for s in api.requests(ITEM)} == {"Bearer at_1"}


def test_a_token_about_to_expire_is_refreshed_with_its_refresh_token(api, make_client):
    api.token_ttl = 20  # inside the refresh margin: every call renews
    api.defaults[ITEM] = Answer(200, intent())
    client = make_client()
    client.payment_intents.retrieve("pi_1")
    client.payment_intents.retrieve("pi_1")
    first, second = api.requests(TOKEN_PATH)
    assert first.body["grant_type"] == "client_credentials"
    assert second.body == {
        "grant_type": "refresh_token",
        "refresh_token": "rt_1",
        "client_id": "ci_test",
        "client_secret": "cs_test",
    }
    assert [s.headers["authorization"] for s in api.requests(ITEM)] == [
        "Bearer at_1",
        "Bearer at_2",
    ]


def test_a_refused_refresh_falls_back_to_the_client_credentials(api, make_client):
    api.token_ttl = 20
    api.defaults[ITEM] = Answer(200, intent())
    client = make_client()
    client.payment_intents.retrieve("pi_1")
    api.then(TOKEN_PATH, problem(400, "invalid_grant"))
    client.payment_intents.retrieve("pi_1")
    grants = [s.body["grant_type"] for s in api.requests(TOKEN_PATH)]
    assert grants == ["client_credentials", "refresh_token", "client_credentials"]


def test_a_refused_token_is_replaced_once_and_the_call_sent_again(api, make_client, sleeps):
    api.then(ITEM, problem(401, "invalid_token"), Answer(200, intent()))
    assert make_client().payment_intents.retrieve("pi_1").id == "pi_1"
    assert [s.headers["authorization"] for s in api.requests(ITEM)] == [
        "Bearer at_1",
        "Bearer at_2",
    ]
    assert sleeps == []


def test_a_token_refused_twice_raises(api, make_client):
    api.defaults[ITEM] = problem(401, "invalid_token")
    with pytest.raises(AuthenticationError) as caught:
        make_client().payment_intents.retrieve("pi_1")
    assert caught.value.code == "invalid_token" and len(api.requests(ITEM)) == 2


def test_wrong_credentials_raise_authentication_error_without_retrying(api, make_client, sleeps):
    api.defaults[TOKEN_PATH] = problem(401, "invalid_client")
    with pytest.raises(AuthenticationError) as caught:
        make_client().balance.retrieve()
    assert caught.value.code == "invalid_client" and sleeps == []
    assert len(api.requests(TOKEN_PATH)) == 1 and api.requests("/v1/balance") == []


def test_a_missing_scope_is_permission_denied(api, make_client):
    api.defaults["/v1/balance"] = problem(403, "insufficient_scope")
    with pytest.raises(PermissionDeniedError) as caught:
        make_client().balance.retrieve()
    assert caught.value.code == "insufficient_scope"


def test_the_client_requires_credentials():
    from clearhouse_client import Client

    with pytest.raises(ValueError):
        Client("", "cs", "http://127.0.0.1:1")
    with pytest.raises(ValueError):
        Client("ci", "cs", "ftp://example.invalid")
