"""Webhook endpoints through the API: real Postgres, the real worker, real receivers over HTTP.

The API runs in-process (falcon's TestClient, every middleware) and publishes
to the session's worker, which signs and POSTs to loopback receivers. Each
receiver knows every secret of the test, so ``verified_with`` says whose
secret signed what; each test owns its merchant and reads only its rows.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from intake.app import create_app
from shared.db.tables import idempotency_keys, webhook_endpoints
from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.services import events as ev
from shared.services import webhook_endpoints as endpoints
from tests import factories as f
from tests.conftest import free_port
from tests.support.apiclient import OwnAddressClient
from tests.support.receiver import Receiver
from tests.support.units import bound
from tests.support.waiting import until
from tests.support.webhooks import deliveries_of
from workers.celery_app import publish

pytestmark = pytest.mark.integration

SUCCEEDED, PROCESSING = "payment_intent.succeeded", "payment_intent.processing"
FAILED = "payment_intent.payment_failed"


class Merchant:
    """One merchant's API client: JSON calls with its token."""

    def __init__(self, client: OwnAddressClient, merchant: dict):
        self.client, self.merchant = client, merchant
        self.id = merchant["merchant_id"]
        got = client.simulate_post("/v1/oauth/token", json=f.client_credentials(merchant))
        assert got.status_code == 200, got.text
        self.headers = {"Authorization": f"Bearer {got.json['access_token']}"}

    def call(self, method: str, path: str, body=None, key: str | None = None, **params):
        headers = dict(self.headers, **({"Idempotency-Key": key} if key else {}))
        return self.client.simulate_request(
            method, path, json=body, headers=headers, params=params or None
        )

    def create(self, url: str, events: list[str], **extra) -> dict:
        got = self.call(
            "POST", "/v1/webhook_endpoints", {"url": url, "enabled_events": events, **extra}
        )
        assert got.status_code == 200, got.text
        return got.json


@pytest.fixture
def api(settings, engine, vault):
    """Factory: an in-process API (publishing to the worker) with these settings changed."""

    def make(**changed) -> OwnAddressClient:
        app = create_app(settings.replace(**changed), engine=engine, dispatch=publish, vault=vault)
        return OwnAddressClient(app)

    return make


@pytest.fixture
def receivers():
    """Factory: a started loopback receiver (no secrets yet); all stopped after the test."""
    started: list[Receiver] = []

    def start() -> Receiver:
        started.append(Receiver([], free_port()).start())
        return started[-1]

    yield start
    for r in started:
        r.stop()


def endpoint_rows(engine, merchant_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(webhook_endpoints)
            .where(webhook_endpoints.c.merchant_id == merchant_id)
            .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
        ).all()


def types_by_endpoint(engine, merchant_id: str) -> dict[str, list[str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.endpoint_id, e.type FROM webhook_deliveries d"
                " JOIN events e ON e.id = d.event_id WHERE d.merchant_id = :m"
            ),
            {"m": merchant_id},
        ).all()
    out: dict[str, list[str]] = {}
    for endpoint_id, type_ in rows:
        out.setdefault(endpoint_id, []).append(type_)
    return {k: sorted(v) for k, v in out.items()}


def all_recorded(engine, merchant_id: str) -> bool:
    rows = deliveries_of(engine, merchant_id)
    return bool(rows) and all(d.status != "pending" for d in rows)


@pytest.mark.broker
def test_two_endpoints_each_receive_only_their_events_signed_with_their_own_secret(
    worker, api, make_merchant, receivers, submit, engine
):
    m = Merchant(api(), make_merchant())
    paid_rx, ops_rx = receivers(), receivers()
    paid = m.create(paid_rx.url, [SUCCEEDED], description="fulfilment")
    ops = m.create(ops_rx.url, [PROCESSING, FAILED], metadata={"team": "ops"})
    assert paid["secret"].startswith("whsec_") and paid["secret"] != ops["secret"]
    for rx in (paid_rx, ops_rx):
        rx.secrets[:] = [paid["secret"], ops["secret"]]  # index 0: paid's, 1: ops'

    good, bad = submit(m.id, f.card_body()), submit(m.id, f.card_body(f.DECLINE))
    f.wait_until_final(engine, [good, bad])
    paid_rx.wait_for(lambda r: len(r.received) == 1)
    ops_rx.wait_for(lambda r: len(r.received) == 3)
    until(lambda: all_recorded(engine, m.id), what="every attempt recorded")

    # One delivery per event and endpoint that subscribes to its type; the merchant's
    # first endpoint (every type, no URL yet) gets none.
    assert types_by_endpoint(engine, m.id) == {
        paid["id"]: [SUCCEEDED],
        ops["id"]: sorted([PROCESSING, PROCESSING, FAILED]),
    }
    assert [(r.event["type"], r.verified_with) for r in paid_rx.received] == [(SUCCEEDED, [0])]
    assert sorted(r.event["type"] for r in ops_rx.received) == sorted([PROCESSING] * 2 + [FAILED])
    assert all(r.verified_with == [1] for r in ops_rx.received)
    assert paid_rx.rejected == ops_rx.rejected == 0

    listed = m.call("GET", "/v1/webhook_deliveries", endpoint=paid["id"]).json["data"]
    assert [(d["endpoint"], d["url"], d["status"]) for d in listed] == [
        (paid["id"], paid_rx.url, "succeeded")
    ]
    shown = m.call("GET", f"/v1/webhook_endpoints/{ops['id']}").json
    assert shown == {k: v for k, v in ops.items() if k != "secret"}
    assert (shown["enabled_events"], shown["metadata"]) == ([PROCESSING, FAILED], {"team": "ops"})
    page = m.call("GET", "/v1/webhook_endpoints", limit="2").json
    assert [e["id"] for e in page["data"]] == [ops["id"], paid["id"]] and page["has_more"]
    rest = m.call("GET", "/v1/webhook_endpoints", starting_after=paid["id"]).json
    assert [(e["url"], e["enabled_events"]) for e in rest["data"]] == [(None, ["*"])]
    assert not rest["has_more"] and all("secret" not in e for e in page["data"] + rest["data"])


def test_a_disabled_endpoint_receives_nothing_until_it_is_enabled(
    worker, api, make_merchant, receivers, submit, engine
):
    m = Merchant(api(), make_merchant())
    rx = receivers()
    off = m.create(rx.url, ["*"], disabled=True)
    assert off["status"] == "disabled"
    rx.secrets.append(off["secret"])
    f.wait_until_final(engine, [submit(m.id, f.card_body(f.DECLINE))])
    assert deliveries_of(engine, m.id) == []  # none made for a disabled endpoint

    on = m.call("POST", f"/v1/webhook_endpoints/{off['id']}", {"disabled": False})
    assert on.status_code == 200 and on.json["status"] == "enabled", on.text
    intent = submit(m.id, f.card_body(f.DECLINE))
    rx.wait_for(lambda r: len(r.received) == 2)
    assert {r.event["data"]["object"]["id"] for r in rx.received} == {intent}


def test_disabling_or_deleting_an_endpoint_cancels_its_pending_retries(
    worker, api, make_merchant, receivers, submit, engine
):
    m = Merchant(api(), make_merchant())
    down, gone = receivers(), receivers()
    first = m.create(down.url, ["*"])
    second = m.create(gone.url, ["*"])
    down.stop()
    gone.stop()
    f.wait_until_final(engine, [submit(m.id, f.card_body(f.DECLINE))])

    def failed_once():
        rows = deliveries_of(engine, m.id)
        return len(rows) == 4 and all(d.attempts >= 1 for d in rows)

    until(failed_once, what="every first attempt to fail")
    assert (
        m.call("POST", f"/v1/webhook_endpoints/{first['id']}", {"disabled": True}).json["status"]
        == "disabled"
    )
    deleted = m.call("DELETE", f"/v1/webhook_endpoints/{second['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json == {"id": second["id"], "object": "webhook_endpoint", "deleted": True}
    why = {first["id"]: "disabled", second["id"]: "deleted"}
    for d in deliveries_of(engine, m.id):
        assert (d.status, d.next_attempt_at) == ("failed", None)
        assert d.last_error == f"canceled: webhook endpoint {why[d.endpoint_id]}"

    assert m.call("GET", f"/v1/webhook_endpoints/{second['id']}").status_code == 404
    assert m.call("DELETE", f"/v1/webhook_endpoints/{second['id']}").status_code == 404
    listed = [e["id"] for e in m.call("GET", "/v1/webhook_endpoints").json["data"]]
    assert second["id"] not in listed and first["id"] in listed
    before = len(deliveries_of(engine, m.id))
    f.wait_until_final(engine, [submit(m.id, f.card_body(f.DECLINE))])
    assert len(deliveries_of(engine, m.id)) == before  # neither gets anything new


def test_rotation_signs_with_both_secrets_during_the_overlap_then_only_the_new(
    worker, api, make_merchant, receivers, submit, engine
):
    m = Merchant(api(), make_merchant())
    rx = receivers()
    made = m.create(rx.url, [FAILED])
    rx.secrets.append(made["secret"])
    path = f"/v1/webhook_endpoints/{made['id']}/rotate_secret"
    rotated = m.call("POST", path, {"overlap_hours": 1}, key="rotate-1")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json["secret"]
    assert new.startswith("whsec_") and new != made["secret"]
    assert rotated.json["previous_secret_expires_at"] is not None
    assert rotated.headers["cache-control"] == "no-store"
    # A replay answers the same endpoint, but the secret was never stored to show again.
    replay = m.call("POST", path, {"overlap_hours": 1}, key="rotate-1")
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json == {**rotated.json, "secret": None}
    with engine.connect() as conn:
        stored = conn.execute(
            select(idempotency_keys.c.response_body).where(idempotency_keys.c.merchant_id == m.id)
        ).scalar_one()
    assert new not in str(stored) and made["secret"] not in str(stored)

    rx.secrets.append(new)
    submit(m.id, f.card_body(f.DECLINE))
    rx.wait_for(lambda r: len(r.received) == 1)
    assert rx.received[0].signature.count("v1=") == 2
    assert rx.received[0].verified_with == [0, 1]  # old and new both verify

    newest = m.call("POST", path, {"overlap_hours": 0}).json  # no overlap: only it signs
    assert newest["previous_secret_expires_at"] is None
    rx.secrets.append(newest["secret"])
    submit(m.id, f.card_body(f.DECLINE))
    rx.wait_for(lambda r: len(r.received) == 2)
    assert rx.received[1].signature.count("v1=") == 1 and rx.received[1].verified_with == [2]


def test_the_merchant_level_routes_act_on_the_first_endpoint(
    worker, api, make_merchant, receivers, submit, engine, vault
):
    rx = receivers()
    made = make_merchant(webhook_url=rx.url)
    m = Merchant(api(), made)
    (first,) = m.call("GET", "/v1/webhook_endpoints").json["data"]
    assert (first["url"], first["enabled_events"], first["status"]) == (rx.url, ["*"], "enabled")
    other = m.create(receivers().url, [SUCCEEDED])

    moved = receivers()
    with engine.begin() as conn:
        endpoints.set_url(bound(conn), vault, m.id, moved.url, True)
        rotated = endpoints.rotate_secret(bound(conn), vault, m.id, 1)
    shown = {e["id"]: e for e in m.call("GET", "/v1/webhook_endpoints").json["data"]}
    assert shown[first["id"]]["url"] == moved.url
    assert shown[first["id"]]["previous_secret_expires_at"] is not None
    assert shown[other["id"]]["previous_secret_expires_at"] is None  # untouched

    moved.secrets[:] = [made["webhook_secret"], rotated["webhook_secret"]]
    submit(m.id, f.card_body(f.DECLINE))
    moved.wait_for(lambda r: len(r.received) == 2)
    assert all(r.verified_with == [0, 1] for r in moved.received)
    assert rx.received == []


@pytest.mark.parametrize(
    ("body", "code", "param", "says"),
    [
        ({"url": "ftp://example.com/h", "enabled_events": ["*"]}, "invalid_request", "url",
         "scheme must be http or https"),
        ({"url": "http://127.0.0.1:9/h", "enabled_events": ["*"]}, "invalid_request", "url",
         "non-public address"),
        ({"url": "http://10.1.2.3/h", "enabled_events": ["*"]}, "invalid_request", "url",
         "non-public address"),
        ({"url": "https://example.com/h", "enabled_events": ["charge.failed"]},
         "parameter_invalid", "enabled_events[0]", "Unknown event type 'charge.failed'"),
        ({"url": "https://example.com/h", "enabled_events": ["*", SUCCEEDED]},
         "parameter_invalid", "enabled_events", "not both"),
        ({"url": "https://example.com/h", "enabled_events": []}, "parameter_invalid",
         "enabled_events", "non-empty list"),
        ({"url": "https://example.com/h"}, "parameter_missing", "enabled_events",
         "Missing required param"),
        ({"url": "https://example.com/h", "enabled_events": ["*"], "secret": "whsec_x"},
         "parameter_unknown", "secret", "Received unknown parameter"),
        ({"url": "https://example.com/h", "enabled_events": ["*"], "disabled": "no"},
         "parameter_invalid", "disabled", "must be true or false"),
    ],
)  # fmt: skip
def test_a_bad_create_is_a_problem_and_changes_nothing(
    api, make_merchant, engine, body, code, param, says
):
    # The SSRF policy as deployed: private and loopback targets refused.
    m = Merchant(api(webhook_allow_private=False), make_merchant())
    before = endpoint_rows(engine, m.id)
    got = m.call("POST", "/v1/webhook_endpoints", body, key="bad-create")
    assert got.status_code == 400, got.text
    assert got.headers["content-type"].startswith("application/problem+json")
    assert (got.json["code"], got.json["param"]) == (code, param), got.json
    assert says in got.json["detail"], got.json
    assert endpoint_rows(engine, m.id) == before


def test_a_bad_update_or_another_merchants_endpoint_changes_nothing(api, make_merchant, engine):
    # Made where loopback is allowed (this machine resolves no public name); then
    # changed through an API with the policy as deployed.
    made = Merchant(api(), make_merchant())
    mine = made.create("http://127.0.0.1:9/hooks", [SUCCEEDED])
    client = api(webhook_allow_private=False)
    m, other = Merchant(client, made.merchant), Merchant(client, make_merchant())
    path = f"/v1/webhook_endpoints/{mine['id']}"
    before = endpoint_rows(engine, m.id)
    for body, param in (
        ({"url": "http://169.254.169.254/latest"}, "url"),
        ({"enabled_events": ["refund.succeeded", "*"]}, "enabled_events"),
        ({"status": "disabled"}, "status"),
    ):
        got = m.call("POST", path, body)
        assert got.status_code == 400 and got.json["param"] == param, got.text
    for overlap in (-1, 721, 2e16):
        got = m.call("POST", f"{path}/rotate_secret", {"overlap_hours": overlap})
        assert got.status_code == 400 and got.json["param"] == "overlap_hours", got.text

    # Another merchant's id is no endpoint of its: 404, whatever the method.
    for method, tail, body in (
        ("GET", "", None),
        ("POST", "", {"disabled": True}),
        ("DELETE", "", None),
        ("POST", "/rotate_secret", {}),
    ):
        got = other.call(method, path + tail, body)
        assert got.status_code == 404, (method, tail, got.text)
        assert got.json["code"] == "resource_missing"
        assert got.headers["content-type"].startswith("application/problem+json")
    listed = other.call("GET", "/v1/webhook_deliveries", endpoint=mine["id"]).json["data"]
    assert listed == []
    assert endpoint_rows(engine, m.id) == before


def test_redelivery_goes_to_the_named_or_the_only_receiving_endpoint(
    worker, api, make_merchant, receivers, engine
):
    m = Merchant(api(), make_merchant())
    a, b = receivers(), receivers()
    one = m.create(a.url, ["settlement.paid"])
    two = m.create(b.url, ["refund.succeeded"])
    a.secrets.append(one["secret"])
    b.secrets.append(two["secret"])
    with UnitOfWork(engine) as uow:  # not published: only the redeliveries send
        (event_id,) = ev.emit(uow, [(m.id, "settlement.paid", "st_x", {"id": "st_x"})])
        uow.commit()
    redeliver = f"/v1/events/{event_id}/redeliver"
    only = m.call("POST", redeliver, {})
    assert only.status_code == 202 and only.json["endpoint"] == one["id"], only.text
    a.wait_for(lambda r: r.ids() == [event_id])
    named = m.call("POST", redeliver, {"endpoint": two["id"]})  # named: sent, type or not
    assert named.status_code == 202 and named.json["endpoint"] == two["id"], named.text
    b.wait_for(lambda r: r.ids() == [event_id])

    m.call("POST", f"/v1/webhook_endpoints/{two['id']}", {"enabled_events": ["*"]})
    several = m.call("POST", redeliver, {})
    assert (several.status_code, several.json["param"]) == (400, "endpoint"), several.text
    assert "name one" in several.json["detail"]
    other = Merchant(m.client, make_merchant())
    theirs = other.create(a.url, ["*"])["id"]
    assert m.call("POST", redeliver, {"endpoint": theirs}).status_code == 404
    with engine.connect() as conn:
        made = conn.execute(select(wd.c.endpoint_id).where(wd.c.event_id == event_id)).all()
    assert sorted(r.endpoint_id for r in made) == sorted([one["id"], one["id"], two["id"]])
