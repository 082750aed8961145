"""The committed gRPC stubs are what ``make proto`` makes of bank.proto today."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = Path("shared/connectors/bankproto/bank.proto")


def test_the_committed_stubs_match_the_proto(tmp_path):
    pytest.importorskip("grpc_tools")
    (tmp_path / PROTO.parent).mkdir(parents=True)
    shutil.copy(ROOT / PROTO, tmp_path / PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--grpc_python_out=."]
        + [str(PROTO)],
        cwd=tmp_path,
        check=True,
    )
    for stub in ("bank_pb2.py", "bank_pb2_grpc.py"):
        made = (tmp_path / PROTO.parent / stub).read_text()
        assert made == (ROOT / PROTO.parent / stub).read_text(), f"run make proto ({stub})"


def test_clearhouse_bank_is_a_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["clearhouse-bank"] == "bank.main:main"
    from bank.main import main

    assert callable(main)
