"""`make run` as a developer meets it.

The Makefile is read through make itself (``make -n``: nothing runs, but every
variable is what the real run would see).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def make_dry_run(*args: str, env: dict | None = None) -> str:
    """``make -n`` with ``args``; a ``show-env`` target (run even under -n) prints variables."""
    show = 'show-env: ; +@echo "env: WEBHOOK_ALLOW_PRIVATE=$${WEBHOOK_ALLOW_PRIVATE-unset}'
    show += ' LOCUST=$${LOCUST_USERS-unset},$${LOCUST_SPAWN_RATE-unset},$${LOCUST_RUN_TIME-unset}"'
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
    assert "honcho -f deploy/Procfile start" in out
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
