"""`make locust` against the Procfile's stack: a short headless run with no failure.

The run goes through deploy/dev/locust.sh as `make locust` does, with no
credentials given, so the script makes its merchant with the real CLI (on the
e2e database). The locustfile's users fetch tokens, create with idempotency
keys, poll, capture and refund; every request must succeed and every flow
check hold (the script's exit code is locust's ``--exit-code-on-error``).
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import E2E_ENV
from tests.support import locust_runs

pytestmark = pytest.mark.e2e


def test_a_short_headless_locust_run_has_no_failure(stack, tmp_path):
    out, output, rows = locust_runs.run_script(
        stack["url"],
        tmp_path / "locust",
        **E2E_ENV,  # the CLI makes its merchant in the e2e stack's database
        LOCUST_USERS="4",
        LOCUST_SPAWN_RATE="4",
        LOCUST_RUN_TIME="10s",
        LOCUST_STOP_TIMEOUT="20",
        # More captures and refunds than by default: ten seconds must show each.
        LOCUST_MANUAL_SHARE="0.4",
        LOCUST_REFUND_SHARE="0.5",
    )
    assert "locust: created merchant mch_" in out.stderr, output[-3000:]
    assert out.returncode == 0, output[-5000:]
    assert "Aggregated" in output  # locust's summary table
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
        assert locust_runs.request_count(rows, key) > 0, (key, sorted(rows))
