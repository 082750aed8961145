"""Webhooks as merchants and operators meet them: CLI, HTTP API, beat, a real receiver."""

from __future__ import annotations

import json
import uuid

import pytest

from tests import factories as f
from tests.conftest import free_port
from tests.e2e.conftest import Client, cli, create_merchant
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def hooked(stack):
    """A merchant made with the CLI, its URL set with the CLI, a running receiver."""
    merchant = create_merchant("webhook merchant")
    port = free_port()
    receiver = Receiver([merchant["webhook_secret"]], port)
    out = cli(
        "merchant", "set-webhook-url", "--merchant", merchant["merchant_id"], "--url", receiver.url
    )
    assert out.returncode == 0, out.stderr
    yield Client(stack["url"], merchant), receiver.start()
    receiver.stop()


def _wait_delivered(client, receiver, n, timeout=30):
    receiver.wait_for(lambda r: len(set(r.ids())) >= n, timeout=timeout)


def test_events_api_lists_filters_pages_and_isolates(hooked, other_client):
    client, receiver = hooked
    ids = [client.post("/v1/payment_intents", f.card_body()).json()["id"] for _ in range(3)]
    for i in ids:
        client.wait(i, final=("succeeded",))
    _wait_delivered(client, receiver, 6)

    page = client.get("/v1/events?limit=4").json()
    assert page["object"] == "list" and page["has_more"] is True and len(page["data"]) == 4
    rest = client.get(f"/v1/events?limit=4&starting_after={page['data'][-1]['id']}").json()
    assert rest["has_more"] is False and len(rest["data"]) == 2
    listed = page["data"] + rest["data"]
    assert [e["created"] for e in listed] == sorted((e["created"] for e in listed), reverse=True)
    assert {e["id"] for e in listed} == set(receiver.ids())
    # What was delivered is what the API shows.
    delivered = {r.event["id"]: r.event for r in receiver.received}
    assert all(delivered[e["id"]] == e for e in listed)

    succeeded = client.get("/v1/events?type=payment_intent.succeeded").json()["data"]
    assert sorted(e["data"]["object"]["id"] for e in succeeded) == sorted(ids)
    one = client.get(f"/v1/events/{succeeded[0]['id']}")
    assert one.status_code == 200 and one.json() == succeeded[0]

    for path in ("/v1/events?type=nope", "/v1/events?limit=0", "/v1/events?colour=red"):
        r = client.get(path)
        assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/problem")
    assert client.get("/v1/events?colour=red").json()["code"] == "parameter_unknown"
    assert client.get("/v1/events?starting_after=evt_nope").status_code == 404

    # Another merchant learns nothing: 404 everywhere, empty lists.
    assert other_client.get(f"/v1/events/{succeeded[0]['id']}").status_code == 404
    r = other_client.post(f"/v1/events/{succeeded[0]['id']}/redeliver")
    assert r.status_code == 404 and r.json()["code"] == "resource_missing"
    assert other_client.get("/v1/events").json()["data"] == []
    assert (
        other_client.get(f"/v1/webhook_deliveries?event_id={succeeded[0]['id']}").json()["data"]
        == []
    )


def test_an_elevated_risk_payment_goes_on_and_its_review_opened_event_arrives(hooked):
    client, receiver = hooked
    created = client.post("/v1/payment_intents", f.card_body(f.ELEVATED_RISK)).json()
    done = client.wait(created["id"], final=("succeeded",))
    assert done["risk"]["level"] == "elevated" and done["risk"]["score"] == 65
    review = done["review"]
    assert (review["object"], review["payment_intent"]) == ("review", done["id"])
    _wait_delivered(client, receiver, 3)  # processing, review.opened, succeeded

    (opened,) = client.get("/v1/events?type=review.opened").json()["data"]
    assert opened["data"]["object"] == review
    delivered = {r.event["id"]: r.event for r in receiver.received}
    assert delivered[opened["id"]] == opened
    assert sorted(e["type"] for e in delivered.values()) == [
        "payment_intent.processing",
        "payment_intent.succeeded",
        "review.opened",
    ]


def test_deliveries_api_and_idempotent_redelivery(hooked):
    client, receiver = hooked
    intent = client.post("/v1/payment_intents", f.card_body(f.DECLINE)).json()["id"]
    client.wait(intent, final=("failed",))
    _wait_delivered(client, receiver, 2)
    event = client.get("/v1/events?type=payment_intent.payment_failed").json()["data"][0]

    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(f"/v1/events/{event['id']}/redeliver", headers=key)
    assert first.status_code == 202, first.text
    again = client.post(f"/v1/events/{event['id']}/redeliver", headers=key)
    assert again.status_code == 202 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    receiver.wait_for(lambda r: r.ids().count(event["id"]) == 2)

    deliveries = client.get(f"/v1/webhook_deliveries?event_id={event['id']}").json()["data"]
    assert len(deliveries) == 2  # the original and one redelivery: the replay made none
    for d in deliveries:
        d = wait_until(
            lambda d=d: next(
                (
                    x
                    for x in client.get(f"/v1/webhook_deliveries?event_id={event['id']}").json()[
                        "data"
                    ]
                    if x["id"] == d["id"] and x["status"] != "pending"
                ),
                None,
            ),
            10,
            f"delivery {d['id']} to be recorded",
        )
        assert (d["status"], d["attempts"], d["last_status_code"]) == ("succeeded", 1, 200)
        assert d["next_attempt_at"] is None
        assert d["attempt_history"][0]["status_code"] == 200
    # Both deliveries are done after one attempt each, so nothing more can come:
    # the receiver got the event exactly twice (no wait needed to show it).
    assert receiver.ids().count(event["id"]) == 2
    assert client.get("/v1/webhook_deliveries?status=succeeded&limit=1").json()["has_more"]
    assert client.get("/v1/webhook_deliveries?status=lost").status_code == 400


def test_receiver_down_then_back_gets_everything_via_beat(hooked):
    client, receiver = hooked
    receiver.stop()
    ids = [client.post("/v1/payment_intents", f.card_body()).json()["id"] for _ in range(3)]
    for i in ids:
        client.wait(i, final=("succeeded",))

    def deliveries():
        return client.get("/v1/webhook_deliveries").json()["data"]

    wait_until(
        lambda: len(deliveries()) == 6 and all(d["attempts"] >= 1 for d in deliveries()),
        20,
        "every delivery to have failed once",
    )
    receiver.start()
    # Retries are due attempts in Postgres; only beat (the stack's) dispatches them.
    _wait_delivered(client, receiver, 6, timeout=40)
    assert sorted(set(receiver.ids())) == sorted(
        e["id"] for e in client.get("/v1/events").json()["data"]
    )
    wait_until(
        lambda: all(d["status"] == "succeeded" and d["attempts"] >= 2 for d in deliveries()),
        15,
        "every delivery recorded as succeeded on a retry",
    )


def test_cli_rotation_and_url_policy(hooked):
    client, receiver = hooked
    mid = client.merchant["merchant_id"]
    out = cli(
        "merchant", "rotate-webhook-secret", "--merchant", mid, "--overlap-hours", "2", "--json"
    )
    assert out.returncode == 0, out.stderr
    rotated = json.loads(out.stdout)
    assert rotated["webhook_secret"].startswith("whsec_") and rotated["previous_secret_expires_at"]
    receiver.secrets.append(rotated["webhook_secret"])
    client.post("/v1/payment_intents", f.card_body(f.DECLINE))
    receiver.wait_for(lambda r: len(r.received) >= 2)
    assert all(r.verified_with == [0, 1] for r in receiver.received)

    for args, env in (
        (("--url", "ftp://127.0.0.1/x"), None),
        (("--url", f"http://127.0.0.1:{free_port()}/x"), {"WEBHOOK_ALLOW_PRIVATE": "false"}),
        (("--url", "http://10.0.0.8/x"), {"WEBHOOK_ALLOW_PRIVATE": "false"}),
    ):
        bad = cli("merchant", "set-webhook-url", "--merchant", mid, *args, env=env)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
        assert "webhook URL refused" in bad.stderr
    created = cli(
        "merchant",
        "create",
        "--name",
        "x",
        "--webhook-url",
        "http://[::1]/h",
        env={"WEBHOOK_ALLOW_PRIVATE": "false"},
    )
    assert created.returncode == 1 and "non-public" in created.stderr
    missing = cli("merchant", "rotate-webhook-secret", "--merchant", "mch_nope")
    assert missing.returncode == 1 and "No such merchant" in missing.stderr
