"""``make locust`` as a test runs it: deploy/dev/locust.sh, and locust's stats as rows."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(url: str, csv_prefix: Path, timeout: float = 180, **env: str):
    """Run the script against ``url`` with no credentials given (it makes its merchant).

    Returns (the completed run, its output, locust's stats rows by (Type, Name)).
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("CLEARHOUSE_CLIENT_")}
    full.update(BIN=str(Path(sys.executable).parent), **env)
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/dev/locust.sh"), url, "--csv", str(csv_prefix)],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = out.stdout + out.stderr
    rows = {}
    if Path(f"{csv_prefix}_stats.csv").exists():
        with open(f"{csv_prefix}_stats.csv", newline="") as f:
            rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    return out, output, rows


def request_count(rows: dict, key: tuple[str, str]) -> int:
    """How many requests (or FLOW checks) of one row locust counted; 0 if none."""
    return int(rows.get(key, {}).get("Request Count", 0))
