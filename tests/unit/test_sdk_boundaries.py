"""The SDK is its own distribution: it imports only the standard library and itself (never the
server's packages), declares no dependency, and verifies what the server signs."""

from __future__ import annotations

import ast
import sys
import time
import tomllib
from pathlib import Path

import pytest
from clearhouse_client import SignatureVerificationError, Webhook
from clearhouse_client.webhook import WebhookSignature

from shared.domain import webhooks

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk/python"
SERVER_PACKAGES = {"shared", "intake", "workers", "scheduler", "cli", "tests"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "path",
    sorted((SDK / "src").rglob("*.py")) + sorted((ROOT / "examples").glob("*.py")),
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_the_sdk_and_the_examples_import_only_the_standard_library_and_the_sdk(path):
    roots = _imported_roots(path) - {"__future__", "clearhouse_client"}
    assert not roots & SERVER_PACKAGES, f"{path} imports the server: {roots & SERVER_PACKAGES}"
    assert roots <= set(sys.stdlib_module_names), roots - set(sys.stdlib_module_names)


def test_the_distribution_declares_no_dependency_and_python_3_10():
    project = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]
    assert project["name"] == "clearhouse-client" and project["dependencies"] == []
    assert project["requires-python"] == ">=3.10"
    assert project["scripts"] == {"clearhouse-pay": "clearhouse_client.cli:main"}


def test_what_the_server_signs_the_sdk_verifies_with_every_v1():
    body = b'{"id":"evt_1","object":"event","type":"refund.succeeded","data":{"object":{}}}'
    now = int(time.time())
    header = webhooks.sign(["whsec_old", "whsec_new"], body, now)
    for secret in ("whsec_old", "whsec_new"):
        assert Webhook.construct_event(body, header, secret).id == "evt_1"
        assert webhooks.verify(header, body, secret, now)  # the server's reference check agrees
    assert WebhookSignature.compute(body, "whsec_new", now) == header.rsplit("v1=", 1)[1]
    stale = webhooks.sign(["whsec_old"], body, now - webhooks.TOLERANCE_S - 1)
    with pytest.raises(SignatureVerificationError):
        Webhook.construct_event(body, stale, "whsec_old")
    assert not webhooks.verify(stale, body, "whsec_old", now)


def test_make_venv_installs_the_sdk_and_make_test_runs_its_tests():
    makefile = (ROOT / "Makefile").read_text()
    venv = makefile[makefile.index("$(STAMP):") :].split("\n\n", 1)[0]
    assert "sdk/python/pyproject.toml" in venv.splitlines()[0] and "-e sdk/python" in venv
    test = makefile[makefile.index("\ntest:") :].split("\n\n", 1)[0]
    assert "pytest tests sdk/python/tests" in test
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert "sdk/python/tests" in pytest_options["ini_options"]["testpaths"]
