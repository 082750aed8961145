"""`keys rotate-jwt --ring operator`: a new operator signing key, the merchant ring untouched.

A real CLI process on a key folder of the test's own; the operator tokens'
ring is then read as the API reads it (SigningKeys.for_operators).
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime

import pytest

from shared.security import jwt_ring
from shared.security.signing import SigningKeys, generate_pem
from shared.services import keys
from tests.conftest import ROOT, python_bin

pytestmark = pytest.mark.integration


def rotate(key_dir, *ring: str) -> dict:
    env = {**os.environ, "CLEARHOUSE_KEY_DIR": str(key_dir), "CLEARHOUSE_ENV": "development"}
    env.pop("OPERATOR_JWT_PRIVATE_KEY", None)
    env.pop("JWT_PRIVATE_KEY", None)
    out = subprocess.run(
        [python_bin("clearhouse"), "keys", "rotate-jwt", *ring, "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, env=env,
    )  # fmt: skip
    assert out.returncode == 0 and out.stderr == "", out
    return json.loads(out.stdout)


def test_rotating_the_operator_ring_leaves_the_merchant_ring_alone(tmp_path, settings):
    merchant = rotate(tmp_path)  # the merchant ring, as before (the default)
    first = rotate(tmp_path, "--ring", "operator")
    assert first["retired_kids"] == [] and first["kid"] != merchant["kid"]
    second = rotate(tmp_path, "--ring", "operator")
    assert second["retired_kids"] == [first["kid"]] and second["kid"] != first["kid"]
    ring = jwt_ring.from_json((tmp_path / jwt_ring.RING_FILE).read_bytes())
    assert [e.kid for e in ring.entries] == [merchant["kid"]]
    local = settings.replace(key_dir=str(tmp_path), environment="development")
    local = local.replace(operator_jwt_private_key="", jwt_private_key="")
    assert SigningKeys.for_operators(local).kid == second["kid"]
    assert SigningKeys.from_settings(local).kid == merchant["kid"]


def test_the_ring_must_be_merchant_or_operator(tmp_path):
    out = subprocess.run(
        [python_bin("clearhouse"), "keys", "rotate-jwt", "--ring", "admin"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_an_operator_key_from_the_environment_is_not_rotated_here(tmp_path, settings):
    local = settings.replace(key_dir=str(tmp_path), jwt_private_key="")
    local = local.replace(operator_jwt_private_key=generate_pem().decode())
    with pytest.raises(keys.KeysFromEnvironment, match="OPERATOR_JWT_PRIVATE_KEY"):
        keys.rotate_jwt(local, datetime.now(UTC), "operator")
    assert not (tmp_path / jwt_ring.OPERATOR_RING_FILE).exists()
    assert keys.rotate_jwt(local, datetime.now(UTC), "merchant")["kid"]  # its own setting
