"""The SDK (sdk/python) against the real stack: the offline queue across an API outage and a
drainer SIGKILLed mid-drain, and Webhook.construct_event on real deliveries.

The SDK's clients reach the API through a relay (tests/support/tcp_relay.py) bound to an
address of their own, as every e2e client is (fraud counts per client IP); the relay
also holds back answers, to kill a drainer between the API's answer and its record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import clearhouse_client
import pytest
from clearhouse_client import APIConnectionError, Client, PaymentIntent, Webhook
from clearhouse_client.errors import SignatureVerificationError
from sqlalchemy import func, select

from shared.db.tables import idempotency_keys, payment_intents
from tests import factories as f
from tests.conftest import free_port
from tests.e2e.conftest import API_ENV, E2E_ENV, cli, create_merchant
from tests.support import processes
from tests.support.receiver import Receiver
from tests.support.tcp_relay import Relay
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

SDK_SRC = str(Path(clearhouse_client.__file__).resolve().parents[1])


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def sdk_client(merchant: dict, base_url: str, offline_path: Path | None = None) -> Client:
    return Client(
        merchant["client_id"], merchant["client_secret"], base_url, offline_path=offline_path
    )


def pay_cli(merchant: dict, base_url: str, offline_path: Path, *argv: str, **popen):
    """``clearhouse-pay --json ARGV`` as a merchant's shell runs it (credentials in the env)."""
    env = {
        **os.environ,
        "PYTHONPATH": SDK_SRC,
        "CLEARHOUSE_CLIENT_ID": merchant["client_id"],
        "CLEARHOUSE_CLIENT_SECRET": merchant["client_secret"],
        "CLEARHOUSE_BASE_URL": base_url,
        "CLEARHOUSE_OFFLINE_PATH": str(offline_path),
    }
    argv = [sys.executable, "-m", "clearhouse_client", "--json", *argv]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def finished(process: subprocess.Popen, timeout: float = 60) -> tuple[int, object]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, (json.loads(out) if out.strip() else err)


def intents_of(e2e_engine, merchant_id: str) -> list[str]:
    query = select(payment_intents.c.id).where(payment_intents.c.merchant_id == merchant_id)
    with e2e_engine.connect() as conn:
        return sorted(conn.execute(query).scalars())


def keys_of(e2e_engine, merchant_id: str) -> dict[str, int]:
    """Idempotency keys the API stored for the merchant, and how often each."""
    query = (
        select(idempotency_keys.c.key, func.count())
        .where(idempotency_keys.c.merchant_id == merchant_id)
        .group_by(idempotency_keys.c.key)
    )
    with e2e_engine.connect() as conn:
        return dict(conn.execute(query).all())


class StoppableApi:
    """A gunicorn of the e2e stack's own (its workers process what it accepts) to stop."""

    def __init__(self):
        self.port = free_port()
        self.process = None

    def start(self) -> StoppableApi:
        self.process = processes.gunicorn(self.port, workers=1, env={**E2E_ENV, **API_ENV})
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture
def own_api(stack):
    api = StoppableApi().start()
    yield api
    api.stop()


@pytest.fixture
def relay_to(stack):
    relays = []

    def make(port: int) -> Relay:
        relays.append(Relay(port, f.new_ip(loopback=True)))
        return relays[-1]

    yield make
    for r in relays:
        r.stop()


def test_payments_queued_while_the_api_is_stopped_each_become_one_intent(
    own_api, relay_to, tmp_path, e2e_engine
):
    merchant = create_merchant("sdk offline")
    relay = relay_to(own_api.port)
    queue_file = tmp_path / "offline.sqlite3"
    client = sdk_client(merchant, relay.url, queue_file)
    client.payment_intents.list()  # the API is up: a token, a connection kept alive

    own_api.stop()
    local_ids = [client.offline.submit(f.card_body(amount=1000 + n)) for n in range(4)]
    down = client.offline.drain()
    assert down.remaining == 4 and isinstance(down.error, APIConnectionError)
    code, paid = finished(
        pay_cli(
            merchant,
            relay.url,
            queue_file,
            "pay",
            "--offline",
            "--amount",
            "2000",
            "--currency",
            "USD",
            "--card",
            f.new_card(),
        )
    )
    assert code == 0 and paid["state"] == "queued", paid
    local_ids.append(paid["local_id"])
    assert [(i.local_id, i.state) for i in client.offline.items()] == [
        (i, "queued") for i in local_ids
    ]
    assert intents_of(e2e_engine, merchant["merchant_id"]) == []

    own_api.start()
    up = client.offline.drain()

    assert [i.local_id for i in up.acknowledged] == local_ids and up.remaining == 0
    items = client.offline.items()
    assert all(i.state == "acknowledged" for i in items)
    made = sorted(i.intent_id for i in items)
    assert len(set(made)) == 5 and intents_of(e2e_engine, merchant["merchant_id"]) == made
    assert keys_of(e2e_engine, merchant["merchant_id"]) == {i.idempotency_key: 1 for i in items}
    # The API's own view, two at a time: the same five, and the pipeline takes them on.
    listed = client.payment_intents.list(limit=2).auto_paging_iter()
    assert sorted(i.id for i in listed) == made
    assert client.payment_intents.retrieve(items[-1].intent_id).amount == 2000
    assert client.offline.drain().acknowledged == []  # nothing is sent twice
    assert len(intents_of(e2e_engine, merchant["merchant_id"])) == 5


def test_a_drainer_sigkilled_between_the_answer_and_its_record_still_makes_one_intent_each(
    stack, relay_to, tmp_path, e2e_engine
):
    merchant = create_merchant("sdk drainer")
    relay = relay_to(_port(stack["url"]))
    relay.hold_intents_after = 1  # the second intent's answer never reaches the drainer
    queue_file = tmp_path / "offline.sqlite3"
    client = sdk_client(merchant, relay.url, queue_file)
    local_ids = [client.offline.submit(f.card_body(amount=500 + n)) for n in range(4)]

    drainer = pay_cli(merchant, relay.url, queue_file, "queue", "drain", start_new_session=True)
    try:
        until(lambda: relay.held, timeout=30, what="the API to answer the second item")
    finally:
        os.killpg(drainer.pid, signal.SIGKILL)
        drainer.communicate(timeout=10)
    (held,) = relay.held
    assert [i.state for i in client.offline.items()] == [
        "acknowledged",
        "sending",
        "queued",
        "queued",
    ]
    assert len(intents_of(e2e_engine, merchant["merchant_id"])) == 2  # the API made the second

    relay.hold_intents_after = None
    code, drained = finished(pay_cli(merchant, relay.url, queue_file, "queue", "drain"))

    assert code == 0 and drained["acknowledged"] == local_ids[1:], drained
    items = client.offline.items()
    assert [i.state for i in items] == ["acknowledged"] * 4
    assert items[1].intent_id == held["id"] and items[1].attempts == 2  # resent, replayed
    made = sorted(i.intent_id for i in items)
    assert len(set(made)) == 4 and intents_of(e2e_engine, merchant["merchant_id"]) == made
    assert keys_of(e2e_engine, merchant["merchant_id"]) == {i.idempotency_key: 1 for i in items}


def redelivered(receiver: Receiver, event_id: str):
    """The delivery of ``event_id`` signed with both secrets (after the rotation), if any."""
    return next(
        (x for x in receiver.received if x.event["id"] == event_id and x.verified_with == [0, 1]),
        None,
    )


@pytest.fixture
def hooked(stack, relay_to):
    merchant = create_merchant("sdk webhooks")
    receiver = Receiver([merchant["webhook_secret"]], free_port())
    out = cli(
        "merchant", "set-webhook-url", "--merchant", merchant["merchant_id"], "--url", receiver.url
    )
    assert out.returncode == 0, out.stderr
    relay = relay_to(_port(stack["url"]))
    yield merchant, sdk_client(merchant, relay.url), receiver.start()
    receiver.stop()


def test_construct_event_verifies_real_deliveries_and_refuses_tampered_or_stale_ones(hooked):
    merchant, client, receiver = hooked
    secret = merchant["webhook_secret"]
    created = client.payment_intents.create(
        **f.card_body(amount=1234), priority="instant", idempotency_key="sdk-hook-1"
    )
    assert isinstance(created, PaymentIntent) and created.status == "processing"
    receiver.wait_for(
        lambda r: (
            {"payment_intent.processing", "payment_intent.succeeded"}
            <= {x.event["type"] for x in r.received}
        )
    )

    for delivery in list(receiver.received):
        event = Webhook.construct_event(delivery.body, delivery.signature, secret)
        assert event.raw == delivery.event
        if event.type.startswith("payment_intent."):
            assert isinstance(event.data, PaymentIntent) and event.data.id == created.id
        # The API's event log holds what was delivered.
        assert client.events.retrieve(event.id).raw == event.raw
    first = receiver.received[0]

    tampered = first.body.replace(b"1234", b"1235", 1)
    assert tampered != first.body
    t, v1 = first.signature.split(",")[:2]
    forged = f"{t},v1={'0' * 64}"
    for payload, header, key in (
        (tampered, first.signature, secret),
        (first.body, forged, secret),
        (first.body, first.signature, "whsec_someone_else"),
        (first.body, v1, secret),  # no timestamp
    ):
        with pytest.raises(SignatureVerificationError):
            Webhook.construct_event(payload, header, key)
    # Stale: the same real delivery, once it is older than the receiver's tolerance.
    signed_at = int(t.removeprefix("t="))
    until(lambda: time.time() - signed_at > 2, timeout=10, what="the delivery to age 2 s")
    with pytest.raises(SignatureVerificationError, match="timestamp"):
        Webhook.construct_event(first.body, first.signature, secret, tolerance=2)

    # During a secret rotation every delivery carries one v1 per secret: either verifies.
    out = cli(
        "merchant",
        "rotate-webhook-secret",
        "--merchant",
        merchant["merchant_id"],
        "--overlap-hours",
        "1",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    new_secret = json.loads(out.stdout)["webhook_secret"]
    receiver.secrets.append(new_secret)
    redelivery = client.events.redeliver(first.event["id"])
    assert redelivery.event_id == first.event["id"] and redelivery.status == "pending"
    receiver.wait_for(lambda r: redelivered(r, first.event["id"]))
    again = redelivered(receiver, first.event["id"])
    assert again.signature.count("v1=") == 2
    for key in (secret, new_secret):
        assert Webhook.construct_event(again.body, again.signature, key).id == first.event["id"]

    done = until(
        lambda: [
            d
            for d in client.webhook_deliveries.list(event_id=first.event["id"]).data
            if d.status == "succeeded"
        ][1:],
        timeout=15,
        what="both deliveries of the event recorded",
    )
    assert done[0].attempt_history[0].status_code == 200


def test_the_sdk_erases_a_customer_and_its_webhook_carries_a_typed_erasure(hooked):
    merchant, client, receiver = hooked
    customer = f"cus_sdk_{f.new_card()[-6:]}"
    created = client.payment_intents.create(
        **f.card_body(amount=700), customer=customer, description="Grace", priority="instant"
    )
    erasure = client.customers.erase(customer)
    assert isinstance(erasure, clearhouse_client.CustomerErasure)
    assert erasure.intents_erased == 1 and "customer" in erasure.fields
    assert client.payment_intents.retrieve(created.id).raw["customer"] == "[erased]"
    assert client.customers.erase(customer).id == erasure.id  # idempotent: the same erasure
    receiver.wait_for(lambda r: "customer.erased" in {x.event["type"] for x in r.received})
    (hook,) = [x for x in receiver.received if x.event["type"] == "customer.erased"]
    event = Webhook.construct_event(hook.body, hook.signature, merchant["webhook_secret"])
    assert isinstance(event.data, clearhouse_client.CustomerErasure)
    assert event.data.id == erasure.id and customer.encode() not in hook.body
