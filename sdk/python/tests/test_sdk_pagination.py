"""Lists: one page with has_more; auto_paging_iter walks every page by starting_after."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

from clearhouse_client import Event, PaymentIntent, Refund, WebhookDelivery
from conftest import Answer, intent

INTENTS = "/v1/payment_intents"


def page(ids, has_more, url=INTENTS, make=intent):
    return Answer(
        200, {"object": "list", "data": [make(i) for i in ids], "has_more": has_more, "url": url}
    )


def query(seen) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(seen.path).query).items()}


def test_auto_paging_walks_every_page_keeping_the_filters(api, make_client):
    api.then(
        INTENTS, page(["pi_5", "pi_4"], True), page(["pi_3", "pi_2"], True), page(["pi_1"], False)
    )
    first = make_client().payment_intents.list(status="succeeded", limit=2)

    assert [i.id for i in first] == ["pi_5", "pi_4"] and first.has_more
    assert all(isinstance(i, PaymentIntent) for i in first.data)
    walked = [i.id for i in first.auto_paging_iter()]

    assert walked == ["pi_5", "pi_4", "pi_3", "pi_2", "pi_1"]
    asked = [query(s) for s in api.requests(INTENTS)]
    assert asked == [
        {"status": "succeeded", "limit": "2"},
        {"status": "succeeded", "limit": "2", "starting_after": "pi_4"},
        {"status": "succeeded", "limit": "2", "starting_after": "pi_2"},
    ]


def test_the_last_page_has_no_next_and_an_empty_list_iterates_nothing(api, make_client):
    api.then(INTENTS, page([], False))
    empty = make_client().payment_intents.list()
    assert len(empty) == 0 and empty.next_page() is None and list(empty.auto_paging_iter()) == []
    assert query(api.requests(INTENTS)[0]) == {}  # no filter given: none sent


def test_a_page_can_be_stepped_by_hand(api, make_client):
    api.then(INTENTS, page(["pi_2"], True), page(["pi_1"], False))
    first = make_client().payment_intents.list(limit=1)
    second = first.next_page()
    assert [i.id for i in second] == ["pi_1"] and second.next_page() is None


def test_every_list_types_its_items(api, make_client):
    client = make_client()

    def refund(i):
        return {"id": i, "object": "refund", "amount": 5}

    def event(i):
        data = {"object": intent("pi_1", status="succeeded")}
        return {"id": i, "object": "event", "type": "payment_intent.succeeded", "data": data}

    def delivery(i):
        attempt = {"attempt": 1, "outcome": "succeeded", "status_code": 200}
        return {"id": i, "object": "webhook_delivery", "attempt_history": [attempt]}

    api.then("/v1/refunds", page(["re_2", "re_1"], False, make=refund))
    api.then("/v1/events", page(["evt_1"], False, make=event))
    api.then("/v1/webhook_deliveries", page(["wd_1"], False, make=delivery))

    refunds = client.refunds.list(payment_intent="pi_1")
    assert [type(r) for r in refunds] == [Refund, Refund] and refunds.data[0].amount == 5
    (evt,) = client.events.list(type="payment_intent.succeeded")
    assert isinstance(evt, Event) and isinstance(evt.data, PaymentIntent)
    assert evt.data.status == "succeeded"
    (wd,) = client.webhook_deliveries.list(event_id="evt_1", status="succeeded")
    assert isinstance(wd, WebhookDelivery) and wd.attempt_history[0].status_code == 200
    assert query(api.requests("/v1/refunds")[0]) == {"payment_intent": "pi_1"}
    assert query(api.requests("/v1/webhook_deliveries")[0]) == {
        "event_id": "evt_1",
        "status": "succeeded",
    }


def test_balance_and_the_daily_report_are_typed(api, make_client):
    api.then(
        "/v1/balance",
        Answer(
            200,
            {
                "object": "balance",
                "livemode": False,
                "available": [{"currency": "USD", "amount": 990}],
                "pending": [{"currency": "USD", "amount": 10, "held": 5000}],
            },
        ),
    )
    row = {
        "object": "daily_report_row",
        "date": "2026-01-02",
        "currency": "USD",
        "counts": {"succeeded": 1},
        "gross": 1050,
        "fees": 60,
        "refunds": 0,
        "net": 990,
        "settled": 990,
    }
    api.then(
        "/v1/reports/daily",
        Answer(
            200, {"object": "list", "data": [row], "has_more": False, "url": "/v1/reports/daily"}
        ),
    )
    client = make_client()
    balance = client.balance.retrieve()
    assert balance.available[0].amount == 990 and balance.pending[0].held == 5000
    report = client.reports.daily(dt.date(2026, 1, 2))
    assert report.data[0].net == 990 and report.data[0].counts == {"succeeded": 1}
    assert query(api.requests("/v1/reports/daily")[0]) == {"date": "2026-01-02"}
    assert report.data[0].to_dict() == row
