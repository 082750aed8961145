"""The real ``clearhouse`` CLI process, as tests run it: its output and its refusals."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import ROOT, python_bin


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``clearhouse ARGS`` (``env`` on top of this process's environment)."""
    return subprocess.run(
        [python_bin("clearhouse"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def ok_json(*args: str, env: dict | None = None) -> dict:
    """The one line of JSON a successful ``--json`` command prints."""
    out = cli(*args, "--json", env=env)
    assert out.returncode == 0 and out.stderr == "", (args, out)
    assert out.stdout.count("\n") == 1, out.stdout  # one line of JSON
    return json.loads(out.stdout)


def refused(status: int, *args: str, says: str, env: dict | None = None) -> None:
    """The command exits ``status`` with one line on stderr saying ``says``, and prints nothing."""
    out = cli(*args, env=env)
    lines = out.stderr.splitlines()
    assert (out.returncode, out.stdout, len(lines)) == (status, "", 1), (args, out)
    assert lines[0].startswith("clearhouse: error: ") and says in lines[0], lines
