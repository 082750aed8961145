"""``pip install sdk/python`` into a clean venv gives a working SDK and ``clearhouse-pay``.

As tests/integration/test_packaging.py does for the server: a venv with nothing in it,
the SDK installed from a copy of sdk/python (so no build/ or egg-info is left in the
checkout) by a normal, build-isolated ``pip install``, then used from outside the
checkout (``python -I``). Its only build requirement (setuptools) comes from a wheel
cache outside the checkout, filled on a machine's first run. The venv gets the
interpreter running the tests and, when one is on PATH, Python 3.10: the oldest the
SDK supports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.wheels import pip_env, wheel_cache

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk/python"
BUILD_REQUIREMENT = "setuptools>=68"

USE = r"""
import importlib.util, json, sys
import clearhouse_client
from clearhouse_client import Client, Webhook
client = Client("ci_x", "cs_x", "http://127.0.0.1:9", offline_path=sys.argv[1])
local_id = client.offline.submit({"amount": 5, "currency": "USD",
                                  "payment_method": {"type": "wallet", "wallet_id": "wal_1"}})
print(json.dumps({
    "file": clearhouse_client.__file__,
    "version": clearhouse_client.__version__,
    "python": list(sys.version_info[:2]),
    "server_importable": [m for m in ("shared", "intake", "workers", "cli")
                          if importlib.util.find_spec(m) is not None],
    "queued": [i.state for i in client.offline.items()],
    "local_id": local_id,
}))
"""


def _interpreters() -> list[str]:
    found = [sys.executable]
    oldest = shutil.which("python3.10")
    if (
        oldest
        and subprocess.run([oldest, "-c", "import venv"], capture_output=True).returncode == 0
    ):
        found.append(oldest)
    return found


@pytest.fixture(scope="module", params=_interpreters(), ids=lambda p: Path(p).name)
def sdk_venv(request, tmp_path_factory):
    source = tmp_path_factory.mktemp("sdk-source") / "python"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".pytest_cache")
    shutil.copytree(SDK, source, ignore=ignore)
    venv = tmp_path_factory.mktemp("sdk-venv") / "venv"
    subprocess.run([request.param, "-m", "venv", "--without-pip", str(venv)], check=True)
    argv = [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q"]
    argv += [
        "--no-index",
        "--find-links",
        str(wheel_cache("sdk-build", [BUILD_REQUIREMENT], BUILD_REQUIREMENT)),
        str(source),
    ]
    out = subprocess.run(argv, env=pip_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return venv


def _in_venv(venv: Path, tmp: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        cwd=tmp,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pip_install_sdk_python_gives_the_sdk_alone(sdk_venv, tmp_path):
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(sdk_venv / "bin/python"), "list",
         "--format", "json"],
        env=pip_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [d["name"] for d in json.loads(listed.stdout)] == ["clearhouse-client"]

    out = _in_venv(sdk_venv, tmp_path, "python", "-I", "-c", USE, str(tmp_path / "q.sqlite3"))
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout)
    assert found["file"].startswith(str(sdk_venv / "lib")), found
    assert found["server_importable"] == [] and found["queued"] == ["queued"]
    assert found["python"] >= [3, 10]


def test_the_clearhouse_pay_console_script_is_installed(sdk_venv, tmp_path):
    assert _in_venv(sdk_venv, tmp_path, "clearhouse-pay", "--help").returncode == 0
    env = {
        "CLEARHOUSE_CLIENT_ID": "ci_x",
        "CLEARHOUSE_CLIENT_SECRET": "cs_x",
        "CLEARHOUSE_BASE_URL": "http://127.0.0.1:9",
    }
    out = _in_venv(sdk_venv, tmp_path, "clearhouse-pay", "--json", "queue", "list", **env)
    assert out.returncode == 0 and json.loads(out.stdout) == [], out.stderr
    # The default queue file is under the user's home.
    assert (tmp_path / ".clearhouse" / "offline.sqlite3").is_file()
