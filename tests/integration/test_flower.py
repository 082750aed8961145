"""Flower as the Procfile (``make run``) starts it, with FLOWER_BASIC_AUTH set.

Operators script Flower's HTTP API, so it must answer to basic auth (without
any auth configured Flower refuses its API to everyone); the UI must refuse
anyone else; and the two endpoints that machines poll without credentials,
compose's healthcheck (``/healthcheck``) and Prometheus (``/metrics``), stay
open.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.support.processes import Process
from tests.support.waiting import until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "ops", "flower-test-password"


def _procfile_flower(port: int) -> str:
    line = next(
        line
        for line in (ROOT / "deploy/Procfile").read_text().splitlines()
        if line.startswith("flower:")
    )
    command = line.partition(":")[2].replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    # The fixed port of the Procfile would collide with a `make run` on this machine.
    command, found = re.subn(r"--port=\d+", f"--port={port}", command)
    assert found == 1, line
    return command


@pytest.fixture(scope="module")
def flower(database):
    port = free_port()
    env = {"FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}", "LOG_LEVEL": "INFO"}
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{base}/healthcheck", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    with Process("flower", ["bash", "-c", _procfile_flower(port)], env) as proc:
        until(up, timeout=60, what=lambda: f"Flower on {base}:\n{proc.output()[-2000:]}")
        yield base


def test_flowers_api_answers_with_basic_auth_and_refuses_without(flower):
    assert requests.get(f"{flower}/api/tasks", auth=(USER, PASSWORD), timeout=10).json() == {}
    answered = requests.get(f"{flower}/api/workers", auth=(USER, PASSWORD), timeout=30)
    assert answered.status_code == 200 and isinstance(answered.json(), dict)
    assert requests.get(f"{flower}/api/tasks", timeout=10).status_code == 401
    wrong = requests.get(f"{flower}/api/tasks", auth=(USER, "wrong"), timeout=10)
    assert wrong.status_code == 401


def test_flowers_control_api_takes_a_scripted_post_with_basic_auth(flower):
    # No XSRF cookie for a script: basic auth alone is enough (a broadcast nobody hears).
    url = f"{flower}/api/task/revoke/{uuid.uuid4()}"
    assert requests.post(url, timeout=10).status_code == 401
    done = requests.post(url, auth=(USER, PASSWORD), timeout=10)
    assert done.status_code == 200, done.text


def test_flowers_ui_needs_the_password(flower):
    assert requests.get(f"{flower}/", timeout=10).status_code == 401
    assert requests.get(f"{flower}/", auth=(USER, PASSWORD), timeout=10).status_code == 200


def test_the_healthcheck_and_metrics_stay_open_for_compose_and_prometheus(flower):
    assert requests.get(f"{flower}/healthcheck", timeout=10).text == "OK"
    metrics = requests.get(f"{flower}/metrics", timeout=10)
    assert metrics.status_code == 200 and "flower_" in metrics.text
