"""`make locust` against the Procfile's stack: a short headless run with no failure.

The run goes through deploy/dev/locust.sh as `make locust` does, with no
credentials given, so the script makes its merchant with the real CLI (on the
e2e database). The locustfile's users fetch tokens, create with idempotency
keys, poll, capture and refund; every request must succeed and every flow
check hold (the script's exit code is locust's ``--exit-code-on-error``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E_ENV, ROOT

pytestmark = pytest.mark.e2e


def test_a_short_headless_locust_run_has_no_failure(stack, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARHOUSE_CLIENT_")}
    env.update(E2E_ENV)  # the CLI makes its merchant in the e2e stack's database
    env.update(
        BIN=str(Path(sys.executable).parent),
        LOCUST_USERS="4",
        LOCUST_SPAWN_RATE="4",
        LOCUST_RUN_TIME="10s",
        LOCUST_STOP_TIMEOUT="20",
        # More captures and refunds than by default: ten seconds must show each.
        LOCUST_MANUAL_SHARE="0.4",
        LOCUST_REFUND_SHARE="0.5",
    )
    csv_prefix = tmp_path / "locust"
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/dev/locust.sh"), stack["url"], "--csv", str(csv_prefix)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = out.stdout + out.stderr
    assert "locust: created merchant mch_" in out.stderr, output[-3000:]
    assert out.returncode == 0, output[-5000:]
    assert "Aggregated" in output  # locust's summary table
    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0, output[-5000:]
    for key in [
        ("POST", "/v1/oauth/token"),
        ("POST", "/v1/payment_intents"),
        ("GET", "/v1/payment_intents/{id}"),
        ("POST", "/v1/payment_intents/{id}/capture"),
        ("POST", "/v1/refunds"),
        ("FLOW", "intent reaches a final status"),
        ("FLOW", "approved card is paid"),
    ]:
        assert int(rows.get(key, {}).get("Request Count", 0)) > 0, (key, sorted(rows))
