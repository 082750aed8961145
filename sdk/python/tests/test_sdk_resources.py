"""What each resource method sends: method, path, body, key; and what it returns, typed."""

from __future__ import annotations

from clearhouse_client import PaymentIntent, Refund, WebhookDelivery
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
