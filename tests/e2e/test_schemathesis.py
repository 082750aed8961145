"""schemathesis against the live API (the Procfile stack) with every check on: no failure.

The document at /openapi.json is generated from the models that validate the
requests; this run is what shows the two agree over real HTTP: schema-valid
requests are refused only by a rule the document states (api_contract/hooks.py),
invalid ones always are (400), every status,
content type, header and body the API answers is the one the document declares.
Deterministic (fixed seed, derandomized generation, bounded examples), so a
failure replays.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

from tests import factories as f
from tests.conftest import python_bin
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent / "api_contract"
SEED = "20261201"
MAX_EXAMPLES = os.environ.get("CLEARHOUSE_SCHEMATHESIS_EXAMPLES", "15")


def run_schemathesis(
    url: str, token: str, workdir: Path, ids: dict[str, str]
) -> subprocess.CompletedProcess:
    """``st run`` with every check on, as a developer would run it."""
    args = [
        python_bin("st"),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--seed",
        SEED,
        "--generation-deterministic",
        "--max-examples",
        MAX_EXAMPLES,
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(workdir / "events.ndjson"),
    ]
    env = {
        **os.environ,
        **ids,  # schemathesis.toml names them
        "SCHEMATHESIS_HOOKS": "tests.e2e.api_contract.hooks",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        args, capture_output=True, text=True, cwd=workdir, env=env, timeout=300, check=False
    )


def figures(stdout: str) -> dict:
    """Operations tested, cases generated and failures, from schemathesis' summary."""
    tested = re.search(r"Tested: (\d+)", stdout)
    cases = re.search(r"(\d+) generated, (.*)", stdout)
    failures = re.search(r"(\d+) unique failures?", cases.group(2)) if cases else None
    return {
        "operations": int(tested.group(1)) if tested else 0,
        "cases": int(cases.group(1)) if cases else 0,
        "failures": int(failures.group(1)) if failures else 0,
    }


def objects(client) -> dict[str, str]:
    """A paid intent, a refund of part of it, an event, a webhook endpoint: ids for the item
    operations."""
    r = client.post("/v1/payment_intents", f.card_body(f.new_card(), 5000, priority="instant"))
    assert r.status_code == 202, r.text
    intent = client.wait(r.json()["id"], final=("succeeded", "failed"))
    assert intent["status"] == "succeeded", intent
    refund = client.post("/v1/refunds", {"payment_intent": intent["id"], "amount": 100})
    assert refund.status_code == 200, refund.text
    event = client.get("/v1/events?limit=1").json()["data"][0]
    # Loopback: nothing listens on port 9 (the stack allows private targets, as in tests).
    hooks = {"url": "http://127.0.0.1:9/hooks", "enabled_events": ["refund.succeeded"]}
    endpoint = client.post("/v1/webhook_endpoints", hooks)
    assert endpoint.status_code == 200, endpoint.text
    return {
        "CLEARHOUSE_ST_INTENT": intent["id"],
        "CLEARHOUSE_ST_REFUND": refund.json()["id"],
        "CLEARHOUSE_ST_EVENT": event["id"],
        "CLEARHOUSE_ST_ENDPOINT": endpoint.json()["id"],
    }


def test_the_live_api_keeps_to_its_document(client, stack, tmp_path):
    spec = requests.get(stack["url"] + "/openapi.json", timeout=10).json()
    # schemathesis leaves out the operation that serves the document it was given.
    operations = sum(len(methods) for methods in spec["paths"].values()) - 1
    # Its own working directory: schemathesis keeps a crash cache there.
    run = run_schemathesis(stack["url"], client.token, tmp_path, objects(client))
    print(run.stdout, run.stderr)  # every failure, with its curl line and st replay id
    found = figures(run.stdout)
    print("schemathesis:", found)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert found["operations"] == operations and found["failures"] == 0, found
    assert found["cases"] > 20 * operations, found
