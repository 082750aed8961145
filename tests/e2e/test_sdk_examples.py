"""examples/: the webhook receiver and the checkout script, run as a merchant runs them,
against the real stack."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from clearhouse_client.webhook import WebhookSignature

from tests import factories as f
from tests.conftest import free_port
from tests.e2e.conftest import cli, create_merchant
from tests.e2e.test_sdk_stack import SDK_SRC, _port, sdk_client
from tests.support.processes import ROOT, Process
from tests.support.tcp_relay import Relay
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples"


def handled(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def relay(stack):
    r = Relay(_port(stack["url"]), f.new_ip(loopback=True))
    yield r
    r.stop()


def test_the_example_receiver_verifies_dedupes_and_answers_fast(stack, relay, tmp_path):
    merchant = create_merchant("example receiver")
    port, log = free_port(), tmp_path / "handled.jsonl"
    argv = [sys.executable, str(EXAMPLES / "webhook_receiver.py"), "--port", str(port)]
    argv += ["--inbox", str(tmp_path / "inbox.sqlite3"), "--handled", str(log)]
    env = {"PYTHONPATH": SDK_SRC, "CLEARHOUSE_WEBHOOK_SECRET": merchant["webhook_secret"]}
    with Process("example-receiver", argv, env) as receiver:
        receiver.wait_for("listening on")
        url = f"http://127.0.0.1:{port}/hooks"
        out = cli(
            "merchant", "set-webhook-url", "--merchant", merchant["merchant_id"], "--url", url
        )
        assert out.returncode == 0, out.stderr
        client = sdk_client(merchant, relay.url)
        client.payment_intents.create(**f.card_body(), priority="instant")
        until(lambda: len(handled(log)) >= 2, timeout=30, what="two events handled")
        event_id = handled(log)[0]["id"]

        # A repeat (the API's at-least-once, here a redelivery) is answered 200, handled once.
        client.events.redeliver(event_id)
        until(
            lambda: (
                len([d for d in client.webhook_deliveries.list(event_id=event_id) if d.attempts])
                == 2
            ),
            timeout=30,
            what="the redelivery attempted",
        )
        deliveries = client.webhook_deliveries.list(event_id=event_id).data
        assert [d.last_status_code for d in deliveries] == [200, 200]
        assert all(d.attempt_history[0].latency_ms < 1000 for d in deliveries)

        # The same event signed afresh (a replay it was not told about): 200, a duplicate.
        secret, t = merchant["webhook_secret"], int(time.time())
        body = json.dumps(client.events.retrieve(event_id).raw).encode()
        fresh = f"t={t},v1={WebhookSignature.compute(body, secret, t)}"
        r = requests.post(url, data=body, headers={"Clearhouse-Signature": fresh}, timeout=5)
        assert r.status_code == 200 and r.json() == {"received": True, "duplicate": True}
        # Forged, or rightly signed an hour ago: 400, nothing recorded.
        forged = body.replace(event_id.encode(), b"evt_x")
        stale = f"t={t - 3600},v1={WebhookSignature.compute(forged, secret, t - 3600)}"
        for header in ("", f"t={t},v1={'0' * 64}", fresh, stale):
            r = requests.post(url, data=forged, headers={"Clearhouse-Signature": header}, timeout=5)
            assert r.status_code == 400, header

        ids = [e["id"] for e in handled(log)]
        assert len(ids) == len(set(ids)) and event_id in ids and "evt_x" not in ids
        until(
            lambda: (
                {e.id for e in client.events.list(limit=100).auto_paging_iter()}
                == {e["id"] for e in handled(log)}
            ),
            timeout=30,
            what="every event of the merchant handled, and nothing else",
        )


def checkout(merchant: dict, base_url: str, queue: Path, order: str, card: str):
    env = {
        "PYTHONPATH": SDK_SRC,
        "PATH": "/usr/bin:/bin",
        "CLEARHOUSE_CLIENT_ID": merchant["client_id"],
        "CLEARHOUSE_CLIENT_SECRET": merchant["client_secret"],
        "CLEARHOUSE_BASE_URL": base_url,
        "CLEARHOUSE_OFFLINE_PATH": str(queue),
    }
    argv = [sys.executable, str(EXAMPLES / "checkout.py"), "--order", order]
    argv += ["--amount", "1050", "--card", card, "--wait", "30"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_example_checkout_queues_while_offline_and_pays_once_when_back(stack, relay, tmp_path):
    merchant = create_merchant("example checkout")
    queue, card = tmp_path / "till.sqlite3", f.new_card()
    away = f"http://127.0.0.1:{free_port()}"  # nothing listens: the shop's network is down

    queued = checkout(merchant, away, queue, "A-1", card)
    assert queued["state"] == "queued" and queued["waiting"] == 1
    # The till retries the same order when the network is back: one payment.
    paid = checkout(merchant, relay.url, queue, "A-1", card)
    assert paid["local_id"] == queued["local_id"] and paid["state"] == "acknowledged"
    assert paid["status"] == "succeeded"
    again = checkout(merchant, relay.url, queue, "A-1", card)
    assert again["intent_id"] == paid["intent_id"]
    intents = list(sdk_client(merchant, relay.url).payment_intents.list().auto_paging_iter())
    assert [i.id for i in intents] == [paid["intent_id"]]
    assert intents[0].metadata == {"order": "A-1"}
