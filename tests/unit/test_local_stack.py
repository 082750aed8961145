"""`make run` and `make locust` as a developer meets them, and the locustfile's contract.

The Makefile is read through make itself (``make -n``: nothing runs, but every
variable is what the real run would see). The locustfile is never imported
here: importing locust monkey-patches the interpreter (gevent), so it is read
as source, or run in a process of its own.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.connectors.sandbox import TEST_CARDS, luhn_valid
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "tests/load/locustfile.py"
RUN_SCRIPT = ROOT / "deploy/dev/run.sh"
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def make_dry_run(*args: str, env: dict | None = None) -> str:
    """``make -n`` with ``args``; a ``show-env`` target (run even under -n) prints variables."""
    show = 'show-env: ; +@echo "env: WEBHOOK_ALLOW_PRIVATE=$${WEBHOOK_ALLOW_PRIVATE-unset}'
    show += " LOCUST=$${LOCUST_USERS-unset},$${LOCUST_SPAWN_RATE-unset},$${LOCUST_RUN_TIME-unset}"
    show += ' TLS=$${TLS_DIR-unset},$${TLS_CLIENT_CA_FILE-unset}"'
    out = subprocess.run(
        # PYTHON given: make need not search PATH for an interpreter (slow with shims).
        ["make", "--no-print-directory", "-n", f"PYTHON={sys.executable}", "--eval", show, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


# Variables of the developer's shell that these tests set themselves.
_OURS = {
    "WEBHOOK_ALLOW_PRIVATE",
    "FLOWER_BASIC_AUTH",
    "LOCUST_USERS",
    "LOCUST_SPAWN_RATE",
    "LOCUST_RUN_TIME",
    "TLS_DIR",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "TLS_CLIENT_CA_FILE",
}


def _clean_env(**extra: str) -> dict:
    return {**{k: v for k, v in os.environ.items() if k not in _OURS}, **extra}


@needs_make
def test_make_run_allows_private_webhook_urls_for_every_process_and_says_so():
    # show-env as a prerequisite of run sees what run's recipe (honcho, and so every
    # process of the Procfile) gets in its environment.
    out = make_dry_run("--eval", "run: show-env", "run", env=_clean_env())
    assert "env: WEBHOOK_ALLOW_PRIVATE=true " in out
    assert "private and loopback URLs ALLOWED (WEBHOOK_ALLOW_PRIVATE=true" in out
    assert "exec bash deploy/dev/run.sh" in out
    assert 'honcho" -f "${PROCFILE:-deploy/Procfile}" start' in RUN_SCRIPT.read_text()
    # No Procfile line sets it back (honcho hands each process its own environment).
    assert "WEBHOOK_ALLOW_PRIVATE" not in (ROOT / "deploy/Procfile").read_text()


@needs_make
def test_outside_make_run_the_strict_default_stays():
    assert "env: WEBHOOK_ALLOW_PRIVATE=unset " in make_dry_run("show-env", env=_clean_env())
    # ... and a developer who sets it off gets what they asked for, and is told.
    out = make_dry_run(
        "--eval", "run: show-env", "run", env=_clean_env(WEBHOOK_ALLOW_PRIVATE="false")
    )
    assert "env: WEBHOOK_ALLOW_PRIVATE=false " in out and "URLs refused" in out


@needs_make
def test_make_runs_banner_names_flowers_user_never_its_password():
    out = make_dry_run("run", env=_clean_env(FLOWER_BASIC_AUTH="ops:hunter2"))
    assert "(basic auth: user ops)" in out and "hunter2" not in out
    assert "needs FLOWER_BASIC_AUTH=user:password" in make_dry_run("run", env=_clean_env())


@needs_make
def test_make_run_serves_https_with_dev_certificates_and_client_ones_on_request():
    out = make_dry_run("--eval", "run: show-env", "run", env=_clean_env())
    assert " API          https://127.0.0.1:8000/ (dev CA var/tls/ca.pem: curl --cacert" in out
    assert "TLS=var/tls,unset" in out and "Client certs not required" in out
    # What run.sh does with it: certificates when missing, then the API's TLS variables.
    script = RUN_SCRIPT.read_text()
    assert '"$BIN/clearhouse" dev-certs "$dir"' in script
    assert 'export TLS_CERT_FILE="$dir/server.pem" TLS_KEY_FILE="$dir/server-key.pem"' in script
    out = make_dry_run(
        "--eval", "run: show-env", "run", "TLS_CLIENT_CA_FILE=var/tls/ca.pem", env=_clean_env()
    )
    assert "TLS=var/tls,var/tls/ca.pem" in out  # every process honcho starts gets it
    assert "Client certs REQUIRED (signed by var/tls/ca.pem): curl --cert" in out
    assert "http://127.0.0.1:8000" not in out


@needs_make
def test_make_locust_runs_the_script_against_make_runs_port_with_defaults():
    out = make_dry_run("--eval", "locust: show-env", "locust", "PORT=8123", env=_clean_env())
    assert "bash deploy/dev/locust.sh https://127.0.0.1:8123" in out
    assert "env: WEBHOOK_ALLOW_PRIVATE=unset LOCUST=20,5,60s" in out
    out = make_dry_run(
        "--eval",
        "locust: show-env",
        "locust",
        env=_clean_env(LOCUST_USERS="3", LOCUST_RUN_TIME="5s"),
    )
    assert "LOCUST=3,5,5s" in out


def test_the_locust_script_says_so_when_no_stack_runs(tmp_path):
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/dev/locust.sh"), f"http://127.0.0.1:{free_port()}"],
        env=_clean_env(BIN=str(Path(sys.executable).parent)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "start the stack first (make run" in out.stderr


def test_the_locustfile_imports_nothing_but_locust_and_the_standard_library():
    tree = ast.parse(LOCUSTFILE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"locust"}


def test_the_locustfiles_cards_are_luhn_valid_varied_and_never_a_special_card():
    # In a process of its own: importing locust patches the interpreter with gevent.
    script = (
        "import json, random, runpy, sys\n"
        f"ns = runpy.run_path({str(LOCUSTFILE)!r})\n"
        "rng = random.Random(7)\n"
        "print(json.dumps([ns['fresh_visa'](rng) for _ in range(2000)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    cards = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(luhn_valid(c) and len(c) == 16 and c.startswith("4") for c in cards)
    assert len(set(cards)) == len(cards)  # the velocity rules never see one twice
    assert not set(cards) & set(TEST_CARDS)
