"""Logs over the whole flow: JSON lines, request ids from API to worker, no secrets, no
customer data."""

from __future__ import annotations

import json
import secrets

import pytest

from tests import factories as f
from tests.conftest import free_port
from tests.e2e.conftest import E2E_ENV, Client, create_merchant
from tests.support import processes
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e
# A card of the test's own (approves) and the sandbox's special ones: none may be logged.
APPROVING = f.new_card()
CARDS = (APPROVING, f.DECLINE, f.FRAUD, f.PROCESSING_ERROR)


@pytest.fixture(scope="module")
def observed(stack):
    """The stack's processes (beat among them), plus an API with access logs on."""
    port = free_port()
    with processes.gunicorn(port, workers=2, env={**E2E_ENV, "ACCESS_LOG": "1"}) as api:
        yield {
            "url": f"http://127.0.0.1:{port}",
            "api": api,
            # The stage workers: the shared lane's, and the instant lane's (the
            # traced intent is instant); the request id must reach their logs.
            "worker": (stack["workers"]["pipeline"], stack["workers"]["instant"]),
            "beat": stack["beat"],
            "stack": stack["logs"],
        }


@pytest.fixture(scope="module")
def merchant_and_receiver(observed):
    port = free_port()
    merchant = create_merchant("logs", "--webhook-url", f"http://127.0.0.1:{port}/hooks")
    receiver = Receiver([merchant["webhook_secret"]], port).start()
    yield merchant, receiver
    receiver.stop()


def lines_of(process) -> list[dict]:
    if isinstance(process, tuple):  # several processes' lines, one after the other
        return [line for p in process for line in lines_of(p)]
    out = []
    for n, line in enumerate(process.output().splitlines(), 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{process.name} line {n} is not JSON: {line[:300]!r}")
    return out


def test_logs_are_json_carry_request_ids_and_no_secrets(observed, merchant_and_receiver):
    merchant, receiver = merchant_and_receiver
    client = Client(observed["url"], merchant)
    request_id = f"e2e-{secrets.token_hex(8)}"
    tag = secrets.token_hex(6)
    personal = {"customer": f"cus_{tag}", "description": f"Ada {tag}", "note": f"ada.{tag}@x"}
    r = client.post(
        "/v1/payment_intents",
        f.card_body(
            APPROVING,
            1500,
            priority="instant",
            customer=personal["customer"],
            description=personal["description"],
            metadata={"note": personal["note"]},
        ),
        headers={"X-Request-Id": request_id},
    )
    assert r.status_code == 202 and r.headers["X-Request-Id"] == request_id
    traced = r.json()["id"]
    assert client.wait(traced)["status"] == "succeeded"
    for number in CARDS[1:]:
        client.wait(client.post("/v1/payment_intents", f.card_body(number)).json()["id"])
    # A bad request that carries a card number: errors must not echo bodies.
    bad = {**f.card_body(APPROVING), "amount": "12.5"}
    assert client.post("/v1/payment_intents", bad).status_code == 400
    receiver.wait_for(lambda rcv: traced in {e.event["data"]["object"]["id"] for e in rcv.received})
    # The erasure's path names the customer: the access line must not.
    erased = client.post(f"/v1/customers/{personal['customer']}/erase")
    assert erased.status_code == 200, erased.text

    logs = {name: lines_of(observed[name]) for name in ("api", "worker", "beat")}
    for name, lines in logs.items():
        assert lines, f"{name} logged nothing"
        for line in lines:
            assert {"ts", "level", "logger", "message", "request_id", "task_id"} <= set(line)

    api_ids = {line["request_id"] for line in logs["api"]}
    assert request_id in api_ids
    ours = [line for line in logs["worker"] if line["request_id"] == request_id]
    assert ours, "the request id never reached the worker's logs"
    assert all(line["task_id"] for line in ours)
    assert any(line["intent_id"] == traced for line in ours)

    # Nor the customer's data (the client's address neither: the access log has none).
    leaks = (*CARDS, merchant["client_secret"], merchant["webhook_secret"], client.token)
    leaks += (*personal.values(), client.address)
    everyone = [observed["api"], observed["beat"], *observed["stack"]]
    for process in everyone:
        lines_of(process)
        text = process.output()
        for secret in leaks:
            assert secret not in text, f"{process.name} log holds a secret or card number"
