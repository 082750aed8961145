"""Wheels built once per machine, outside the checkout: what the packaging tests install from.

A clean venv is installed with ``--no-index --find-links <cache>``, so only a machine's
first run fetches anything; every run installs afresh from the cache alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def pip_env() -> dict:
    """The environment for pip: its own configuration (index, constraints) stays, nothing of
    the dev venv leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    return env


def wheel_cache(name: str, specs: list[str], key: object, drop: str | None = None) -> Path:
    """A folder of the wheels ``pip wheel specs`` builds, once per ``key`` and Python version.

    ``drop``: a glob of wheels to delete from it (a project installed from source each run).
    """
    digest = json.dumps([sys.version_info[:2], key]).encode()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clearhouse"
    house = base / f"{name}-{hashlib.sha256(digest).hexdigest()[:16]}"
    if (house / ".complete").exists():
        return house
    base.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(partial), *specs]
    out = subprocess.run(argv, env=pip_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    for own in partial.glob(drop) if drop else ():
        own.unlink()
    (partial / ".complete").touch()
    try:
        partial.rename(house)
    except OSError:  # another session filled it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return house
