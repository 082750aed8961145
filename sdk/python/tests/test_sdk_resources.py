"""What each resource method sends: method, path, body, key; and what it returns, typed."""

from __future__ import annotations

from clearhouse_client import (
    CustomerErasure,
    PaymentIntent,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
)
from conftest import Answer, intent


def test_capture_and_cancel_post_their_bodies_to_their_paths(api, make_client):
    api.then("/v1/payment_intents/pi_1/capture", Answer(200, intent("pi_1", status="succeeded")))
    api.then("/v1/payment_intents/pi_1/cancel", Answer(200, intent("pi_1", status="canceled")))
    api.then("/v1/payment_intents/pi_2/capture", Answer(200, intent("pi_2")))
    client = make_client()

    captured = client.payment_intents.capture("pi_1", amount_to_capture=300, idempotency_key="c1")
    canceled = client.payment_intents.cancel("pi_1", "abandoned")
    client.payment_intents.capture("pi_2")

    assert isinstance(captured, PaymentIntent) and captured.status == "succeeded"
    assert canceled.status == "canceled"
    (capture,) = api.requests("/v1/payment_intents/pi_1/capture")
    assert capture.method == "POST" and capture.body == {"amount_to_capture": 300}
    assert capture.headers["idempotency-key"] == "c1"
    (cancel,) = api.requests("/v1/payment_intents/pi_1/cancel")
    assert cancel.body == {"cancellation_reason": "abandoned"}
    assert len(cancel.headers["idempotency-key"]) == 36
    (whole,) = api.requests("/v1/payment_intents/pi_2/capture")
    assert whole.body == {}  # all that is capturable: the API's default


def test_refunds_and_redeliveries_and_the_csv_report(api, make_client):
    refund = {"id": "re_1", "object": "refund", "amount": 400, "fee_refunded": 23}
    delivery = {
        "id": "wd_1",
        "object": "webhook_delivery",
        "event_id": "evt_1",
        "status": "pending",
    }
    api.then("/v1/refunds", Answer(200, refund))
    api.then("/v1/refunds/re_1", Answer(200, refund))
    api.then("/v1/events/evt_1/redeliver", Answer(202, delivery))
    csv = "date,currency\r\n2026-01-02,USD\r\n"
    api.then("/v1/reports/daily", Answer(200, csv, {"Content-Type": "text/csv"}))
    client = make_client()

    made = client.refunds.create(payment_intent="pi_1", amount=400, idempotency_key="r1")
    assert isinstance(made, Refund) and made.fee_refunded == 23
    assert client.refunds.retrieve("re_1") == made
    (sent,) = api.requests("/v1/refunds", "POST")
    assert sent.body == {"payment_intent": "pi_1", "amount": 400}
    assert sent.headers["idempotency-key"] == "r1"
    again = client.events.redeliver("evt_1")
    assert isinstance(again, WebhookDelivery) and again.status == "pending"
    assert api.requests("/v1/events/evt_1/redeliver")[0].body == {}
    assert client.reports.daily_csv("2026-01-02") == csv
    assert api.requests("/v1/reports/daily")[0].headers["accept"] == "text/csv"


def _endpoint(endpoint_id="we_1", **over):
    return {
        "id": endpoint_id,
        "object": "webhook_endpoint",
        "url": "https://shop.example/hooks",
        "enabled_events": ["payment_intent.succeeded"],
        "status": "enabled",
        "description": None,
        "metadata": {},
        "previous_secret_expires_at": None,
        "created": 1,
        "livemode": False,
        **over,
    }


def test_webhook_endpoints_create_update_rotate_delete_and_list(api, make_client):
    api.then("/v1/webhook_endpoints", Answer(200, _endpoint(secret="whsec_new")))
    api.then("/v1/webhook_endpoints/we_1", Answer(200, _endpoint(status="disabled")))
    api.then(
        "/v1/webhook_endpoints/we_1/rotate_secret",
        Answer(200, _endpoint(secret="whsec_2", previous_secret_expires_at=99)),
    )
    client = make_client()
    made = client.webhook_endpoints.create(
        url="https://shop.example/hooks", enabled_events=["payment_intent.succeeded"]
    )
    assert isinstance(made, WebhookEndpoint) and made.secret == "whsec_new"
    (create,) = api.requests("/v1/webhook_endpoints")
    assert create.method == "POST" and create.headers["idempotency-key"]
    assert create.body == {
        "url": "https://shop.example/hooks",
        "enabled_events": ["payment_intent.succeeded"],
    }
    off = client.webhook_endpoints.update("we_1", disabled=True)
    assert off.status == "disabled" and off.secret is None
    assert api.requests("/v1/webhook_endpoints/we_1")[0].body == {"disabled": True}
    rotated = client.webhook_endpoints.rotate_secret("we_1", overlap_hours=2)
    assert rotated.secret == "whsec_2" and rotated.previous_secret_expires_at == 99
    assert api.requests("/v1/webhook_endpoints/we_1/rotate_secret")[0].body == {"overlap_hours": 2}

    api.then(
        "/v1/webhook_endpoints/we_1",
        Answer(200, {"id": "we_1", "object": "webhook_endpoint", "deleted": True}),
    )
    assert client.webhook_endpoints.delete("we_1").deleted is True
    assert api.requests("/v1/webhook_endpoints/we_1")[-1].method == "DELETE"

    page = {"object": "list", "data": [_endpoint("we_2"), _endpoint()], "has_more": False}
    api.then("/v1/webhook_endpoints", Answer(200, {**page, "url": "/v1/webhook_endpoints"}))
    assert [e.id for e in client.webhook_endpoints.list().auto_paging_iter()] == ["we_2", "we_1"]


def test_customers_erase_posts_to_the_quoted_path_and_types_the_erasure(api, make_client):
    erasure = {
        "id": "cer_1",
        "object": "customer_erasure",
        "intents_erased": 2,
        "fields": ["customer", "description", "metadata", "client_ip"],
        "created": 1764700000,
        "livemode": False,
    }
    api.then("/v1/customers/cus%2F1/erase", Answer(200, erasure))
    client = make_client()

    got = client.customers.erase("cus/1", idempotency_key="e1")

    assert isinstance(got, CustomerErasure) and got.intents_erased == 2
    assert got.fields == erasure["fields"] and got.raw == erasure
    (sent,) = api.requests("/v1/customers/cus%2F1/erase")  # a slash can never add a path
    assert sent.method == "POST" and sent.body == {}
    assert sent.headers["idempotency-key"] == "e1"
