"""The short chaos run, so CI guards it: Redis restart, Postgres restart, worker SIGKILL.

``make chaos`` runs the full schedule (every fault kind, about ten minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TEST_ENV

pytestmark = pytest.mark.chaos


def test_short_chaos_run_breaches_nothing():
    env = {**os.environ, "CHAOS_SHORT": "1"}
    # The run makes its own Postgres, Redis, keys and processes: none of the
    # session's settings may leak into it.
    for name in TEST_ENV:
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.chaos"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no result line; stderr:\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1])
    assert result["breaches"] == [], json.dumps(result, indent=1) + proc.stderr[-2000:]
    assert proc.returncode == 0
    assert result["accepted"] > 0 and result["final"] == result["accepted"]
    faults = {"redis_restart", "postgres_restart", "kill:worker_pipeline"}
    assert set(result["recovery_s"]) == faults
