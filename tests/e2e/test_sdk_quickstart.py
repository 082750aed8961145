"""The README's SDK Quickstart, run as written against the real stack, and its shell lines.

Only what names this machine's stack is replaced: the credentials, the base URL (a relay
from an address of the test's own), and the sandbox card (a fresh one: fraud counts per
card across the layer). ``raw_body`` and ``signature_header`` are a real delivery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import factories as f
from tests.conftest import free_port
from tests.e2e.conftest import cli, create_merchant
from tests.e2e.test_sdk_stack import SDK_SRC, _port, pay_cli, sdk_client
from tests.support.processes import ROOT
from tests.support.receiver import Receiver
from tests.support.tcp_relay import Relay

pytestmark = pytest.mark.e2e


def quickstart_code() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quickstart with the Python SDK") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```\n", start)]


@pytest.fixture
def setup(stack, tmp_path):
    merchant = create_merchant("quickstart")
    receiver = Receiver([merchant["webhook_secret"]], free_port()).start()
    out = cli(
        "merchant", "set-webhook-url", "--merchant", merchant["merchant_id"], "--url", receiver.url
    )
    assert out.returncode == 0, out.stderr
    relay = Relay(_port(stack["url"]), f.new_ip(loopback=True))
    yield merchant, relay, receiver
    relay.stop()
    receiver.stop()


def test_the_readme_quickstart_runs_as_written(setup, tmp_path):
    merchant, relay, receiver = setup
    sdk_client(merchant, relay.url).payment_intents.create(**f.card_body())
    receiver.wait_for(lambda r: r.received)
    delivery = receiver.received[0]
    (tmp_path / "delivery.json").write_text(
        json.dumps({"body": delivery.body.decode(), "signature": delivery.signature})
    )
    code = quickstart_code()
    for placeholder, value in {
        "ci_…": merchant["client_id"],
        "cs_…": merchant["client_secret"],
        "whsec_…": merchant["webhook_secret"],
        "https://127.0.0.1:8000": relay.url,
        "4242424242424242": f.new_card(),
    }.items():
        assert placeholder in code
        code = code.replace(placeholder, value)
    prelude = (
        "import json, sys\n"
        "_delivery = json.load(open(sys.argv[1]))\n"
        "raw_body, signature_header = _delivery['body'].encode(), _delivery['signature']\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", prelude + code, str(tmp_path / "delivery.json")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": SDK_SRC, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "processing 990" and lines[1:3] == ["3000", "23"], lines
    events = [line for line in lines[3:] if line.startswith(("payment_intent.", "refund."))]
    assert len(events) >= 6 and any(e.startswith("refund.succeeded re_") for e in events)
    assert any(line.startswith("amount_too_large amount req_") for line in lines)
    assert "state='acknowledged'" in lines[-2] and "intent_id='pi_" in lines[-2]
    assert lines[-1] == delivery.event["type"]
    assert (tmp_path / ".clearhouse" / "offline.sqlite3").is_file()  # the default file


def test_the_readme_clearhouse_pay_lines_work_against_the_stack(setup, tmp_path):
    merchant, relay, _ = setup
    queue = tmp_path / "q.sqlite3"
    card = f.new_card()
    paid = pay_cli(
        merchant, relay.url, queue, "pay", "--amount", "1000", "--currency", "USD", "--card", card
    )
    out, err = paid.communicate(timeout=60)
    assert paid.returncode == 0, err
    intent = json.loads(out)
    assert intent["status"] == "processing" and intent["id"].startswith("pi_")
    status = pay_cli(merchant, relay.url, queue, "status", intent["id"])
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0 and json.loads(out)["id"] == intent["id"], err
    offline = pay_cli(
        merchant,
        relay.url,
        queue,
        "pay",
        "--amount",
        "1000",
        "--currency",
        "USD",
        "--card",
        card,
        "--offline",
    )
    out, err = offline.communicate(timeout=60)
    assert offline.returncode == 0 and json.loads(out)["state"] == "acknowledged", err
    listed = pay_cli(merchant, relay.url, queue, "queue", "list")
    out, _ = listed.communicate(timeout=60)
    assert [i["state"] for i in json.loads(out)] == ["acknowledged"]
