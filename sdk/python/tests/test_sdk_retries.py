"""Every POST carries one Idempotency-Key through all its retries; what is retried and how long
it waits; errors as exceptions with code, param and request id."""

from __future__ import annotations

import random

import pytest

from clearhouse_client import (
    APIConnectionError,
    APIError,
    IdempotencyError,
    InvalidRequestError,
    PaymentIntent,
    RateLimitError,
    RetryPolicy,
)
from conftest import Answer, closed_port, intent, problem

INTENTS = "/v1/payment_intents"
CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031}}


def create(client, **kwargs):
    return client.payment_intents.create(amount=1000, currency="USD", payment_method=CARD, **kwargs)


def test_a_post_gets_a_generated_key_and_every_retry_sends_the_same_one(api, make_client, sleeps):
    api.then(INTENTS, problem(500, "internal_error"), problem(503, "service_unavailable"))
    api.then(INTENTS, Answer(409, problem(409, "idempotency_key_in_use").body))
    api.then(INTENTS, Answer(202, intent("pi_7", amount=1000)))

    got = create(make_client(), priority="instant")

    assert isinstance(got, PaymentIntent) and got.id == "pi_7" and got.amount == 1000
    sent = api.requests(INTENTS)
    keys = {s.headers["idempotency-key"] for s in sent}
    assert len(sent) == 4 and len(keys) == 1 and len(next(iter(keys))) == 36  # one uuid4
    assert sent[0].body == {
        "amount": 1000,
        "currency": "USD",
        "payment_method": CARD,
        "priority": "instant",
    }
    assert all(s.body == sent[0].body for s in sent)
    assert len(sleeps) == 3


def test_the_key_given_is_the_key_sent_and_two_calls_get_two_keys(api, make_client):
    api.then(
        INTENTS, Answer(202, intent("pi_1")), Answer(202, intent("pi_2")), Answer(202, intent())
    )
    client = make_client()
    create(client, idempotency_key="order-1001")
    create(client)
    create(client)
    keys = [s.headers["idempotency-key"] for s in api.requests(INTENTS)]
    assert keys[0] == "order-1001" and len(set(keys)) == 3


def test_a_connection_closed_without_an_answer_is_retried_with_the_same_key(api, make_client):
    api.then(INTENTS, Answer(0, hang_up=True), Answer(0, hang_up=True), Answer(202, intent("pi_9")))
    assert create(make_client()).id == "pi_9"
    sent = api.requests(INTENTS)
    assert len(sent) == 3 and len({s.headers["idempotency-key"] for s in sent}) == 1


def test_no_server_at_all_raises_a_connection_error_after_the_bounded_retries(make_client, sleeps):
    client = make_client(f"http://127.0.0.1:{closed_port()}", retry=RetryPolicy(max_retries=2))
    with pytest.raises(APIConnectionError) as caught:
        create(client)
    assert caught.value.http_status is None
    assert len(sleeps) == 2


def test_429_waits_at_least_its_retry_after(api, make_client, sleeps):
    api.then(INTENTS, problem(429, "rate_limited", **{"Retry-After": "3"}))
    api.then(INTENTS, Answer(202, intent("pi_3")))
    assert create(make_client()).id == "pi_3"
    assert sleeps and sleeps[0] >= 3


def test_a_retry_after_past_the_bound_is_raised_at_once(api, make_client, sleeps):
    api.then(TOKEN := "/v1/oauth/token", problem(429, "client_locked", **{"Retry-After": "900"}))
    with pytest.raises(RateLimitError) as caught:
        create(make_client())
    assert caught.value.code == "client_locked" and caught.value.headers["retry-after"] == "900"
    assert sleeps == [] and len(api.requests(TOKEN)) == 1 and api.requests(INTENTS) == []


def test_retries_are_bounded_and_the_last_error_is_raised(api, make_client, sleeps):
    api.defaults[INTENTS] = problem(503, "service_unavailable", **{"X-Request-Id": "r"})
    with pytest.raises(APIError) as caught:
        create(make_client(retry=RetryPolicy(max_retries=3)))
    assert len(api.requests(INTENTS)) == 4 and len(sleeps) == 3
    error = caught.value
    assert (error.http_status, error.code, error.request_id) == (
        503,
        "service_unavailable",
        "req_service_unavailable",
    )


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (problem(400, "amount_too_large", param="amount"), InvalidRequestError, "amount_too_large"),
        (problem(404, "resource_missing", param="id"), InvalidRequestError, "resource_missing"),
        (problem(422, "idempotency_key_reused"), IdempotencyError, "idempotency_key_reused"),
        (problem(409, "payment_intent_conflict"), InvalidRequestError, "payment_intent_conflict"),
    ],
)
def test_a_definitive_refusal_is_raised_at_once_with_its_problem(
    api, make_client, sleeps, answer, kind, code
):
    api.then(INTENTS, answer)
    with pytest.raises(kind) as caught:
        create(make_client())
    error = caught.value
    assert error.code == code and error.request_id == f"req_{code}"
    assert error.param == answer.body["param"] and error.problem == answer.body
    assert error.http_status == answer.status and code in str(error)
    assert sleeps == [] and len(api.requests(INTENTS)) == 1


def test_an_error_without_a_problem_body_still_says_its_status(api, make_client):
    api.then(INTENTS, Answer(400, "<html>bad</html>", {"Content-Type": "text/html"}))
    with pytest.raises(InvalidRequestError) as caught:
        create(make_client())
    assert caught.value.http_status == 400 and caught.value.code is None
    assert "HTTP 400" in str(caught.value)


def test_gets_carry_no_key_and_are_retried_too(api, make_client):
    api.then("/v1/payment_intents/pi_1", problem(502, "bad_gateway"), Answer(200, intent("pi_1")))
    assert make_client().payment_intents.retrieve("pi_1").id == "pi_1"
    sent = api.requests("/v1/payment_intents/pi_1")
    assert len(sent) == 2 and all("idempotency-key" not in s.headers for s in sent)


def test_ids_are_quoted_into_the_path(api, make_client):
    with pytest.raises(InvalidRequestError):
        make_client(retry=RetryPolicy(max_retries=0)).refunds.retrieve("re_1/../../balance")
    assert api.seen[-1].path == "/v1/refunds/re_1%2F..%2F..%2Fbalance"
    with pytest.raises(ValueError):
        make_client().payment_intents.retrieve("")


def test_the_backoff_doubles_with_jitter_and_is_capped():
    policy = RetryPolicy(max_retries=10, initial_delay_s=0.5, max_delay_s=4.0)
    busy = problem(503, "service_unavailable")
    error = APIError("x", http_status=503, headers=busy.headers)
    rng = random.Random(7)
    for n, nominal in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0], start=1):
        waits = [policy.delay(error, n, rng) for _ in range(200)]
        assert nominal / 2 <= min(waits) and max(waits) <= nominal
        assert max(waits) - min(waits) > nominal / 4  # spread out, not one instant
    assert policy.should_retry(error, 9) and not policy.should_retry(error, 10)
