"""Anchors: transaction data, the verdict on one seal, settings and keys, the devchain's JSON."""

from __future__ import annotations

import json
import secrets
from datetime import date

import pytest
from eth_account import Account
from hexbytes import HexBytes
from web3.datastructures import AttributeDict

from cli.devchain import to_rpc
from shared.config import Settings
from shared.connectors.chain import ChainError, load_account
from shared.domain.anchors import OnChain, judge, missing_anchors, payload

DAY = date(2026, 11, 30)
SEAL, OTHER = "ab" * 32, "cd" * 32
US, THEM = "0x" + "11" * 20, "0x" + "22" * 20
TX = "0x" + "ee" * 32
ANCHOR_VARS = (
    "ANCHOR_RPC_URL",
    "ANCHOR_PRIVATE_KEY",
    "ANCHOR_KEYSTORE_FILE",
    "ANCHOR_KEYSTORE_PASSWORD_FILE",
    "ANCHOR_CHAIN_ID",
    "ANCHOR_CONFIRMATIONS",
)


def _judge(chain: OnChain, stored=SEAL, recomputed=SEAL, block=7) -> str | None:
    return judge(DAY, stored, recomputed, TX, block, chain, US)


def test_the_payload_is_the_seal_hashs_32_raw_bytes():
    assert payload(SEAL) == bytes([0xAB]) * 32
    with pytest.raises(ValueError, match="32 bytes"):
        payload("ab" * 31)


def test_an_anchor_matching_the_stored_and_recomputed_seal_passes():
    assert _judge(OnChain(bytes.fromhex(SEAL), US, 7)) is None
    # Addresses compare whatever their checksum case.
    assert _judge(OnChain(bytes.fromhex(SEAL), US.upper().replace("0X", "0x"), 7)) is None


@pytest.mark.parametrize(
    ("chain", "stored", "recomputed", "expected"),
    [
        (OnChain(None, None, None), SEAL, SEAL, f"anchor {TX} not found on the chain"),
        (OnChain(bytes.fromhex(SEAL), US, None), SEAL, SEAL, f"anchor {TX} is not mined"),
        (OnChain(bytes.fromhex(SEAL), US, 8), SEAL, SEAL, f"anchor {TX} is in block 8, not 7"),
        (OnChain(bytes.fromhex(SEAL), THEM, 7), SEAL, SEAL, f"was sent by {THEM}, not by {US}"),
        (
            OnChain(bytes.fromhex(SEAL), US, 7),
            OTHER,
            OTHER,
            f"the chain holds {SEAL}, the stored seal is {OTHER} (anchor {TX} in block 7)",
        ),
        (
            OnChain(bytes.fromhex(SEAL), US, 7),
            SEAL,
            OTHER,
            f"the chain holds {SEAL}, the ledger recomputes {OTHER} (anchor {TX} in block 7)",
        ),
    ],
)
def test_each_way_an_anchor_differs_is_named(chain, stored, recomputed, expected):
    problem = _judge(chain, stored, recomputed)
    assert problem.startswith(f"seal {DAY}: ") and expected in problem


def test_the_devchain_answers_in_json_rpcs_encoding():
    result = AttributeDict(
        {"blockNumber": 7, "status": 1, "input": HexBytes(b"\xab\x01"), "logs": [], "ok": True}
    )
    assert to_rpc(result) == {
        "blockNumber": "0x7",
        "status": "0x1",
        "input": "0xab01",
        "logs": [],
        "ok": True,
    }
    assert (to_rpc(None), to_rpc("0xabc"), to_rpc([0, b""])) == (None, "0xabc", ["0x0", "0x"])


def test_unanchored_seals_are_a_problem_only_if_the_account_sent_more_than_is_on_record():
    assert missing_anchors([DAY], 3, 3, US) is None  # sent, not mined yet
    assert missing_anchors([], 5, 3, US) is None  # every seal anchored: a stray send is not
    assert missing_anchors([DAY], 3, 2, US) == (
        f"seal {DAY}: not anchored, but {US} has sent 3 transactions and 2 anchors are on"
        " record: anchors were removed (or the key is used elsewhere)"
    )


@pytest.fixture
def anchor_env(monkeypatch):
    for name in ANCHOR_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_anchoring_is_off_by_default(anchor_env):
    s = Settings.from_env()
    assert (s.anchor_rpc_url, s.anchor_chain_id, s.anchor_interval_s) == ("", 0, 60.0)


def test_anchoring_settings_are_read_and_the_key_stays_out_of_the_repr(anchor_env):
    key = "0x" + "5a" * 32
    anchor_env.setenv("ANCHOR_RPC_URL", "http://127.0.0.1:8545")
    anchor_env.setenv("ANCHOR_PRIVATE_KEY", key)
    anchor_env.setenv("ANCHOR_CHAIN_ID", "5")
    s = Settings.from_env()
    assert (s.anchor_rpc_url, s.anchor_private_key, s.anchor_chain_id) == (
        "http://127.0.0.1:8545",
        key,
        5,
    )
    assert "5a5a" not in repr(s)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ANCHOR_RPC_URL": "http://n", "ANCHOR_PRIVATE_KEY": "0x" + "1" * 64}, "ANCHOR_CHAIN_ID"),
        ({"ANCHOR_RPC_URL": "http://n", "ANCHOR_CHAIN_ID": "1"}, "needs ANCHOR_PRIVATE_KEY or"),
        ({"ANCHOR_PRIVATE_KEY": "0xnothex"}, "ANCHOR_PRIVATE_KEY must be 32 bytes of hex"),
        (
            {"ANCHOR_PRIVATE_KEY": "0x" + "1" * 64, "ANCHOR_KEYSTORE_FILE": "k.json"},
            "not both",
        ),
        ({"ANCHOR_KEYSTORE_FILE": "k.json"}, "needs ANCHOR_KEYSTORE_PASSWORD_FILE"),
        ({"ANCHOR_CONFIRMATIONS": "0"}, "ANCHOR_CONFIRMATIONS must be from 1 to 1000"),
    ],
)
def test_an_incomplete_or_bad_anchoring_setting_is_refused_by_name(anchor_env, env, message):
    for name, value in env.items():
        anchor_env.setenv(name, value)
    with pytest.raises(ValueError, match=message) as refused:
        Settings.from_env()
    assert "nothex" not in str(refused.value)


def test_the_key_comes_from_a_keystore_file_and_its_password_file(tmp_path):
    key = secrets.token_bytes(32)
    keystore, password = tmp_path / "anchor.json", tmp_path / "password"
    keystore.write_text(json.dumps(Account.encrypt(key, "s3cret", iterations=2)))
    password.write_text("s3cret\n")  # one trailing newline, as editors leave it
    s = Settings(anchor_keystore_file=str(keystore), anchor_keystore_password_file=str(password))
    assert load_account(s).address == Account.from_key(key).address
    password.write_text("wrong")
    with pytest.raises(ChainError, match="cannot open ANCHOR_KEYSTORE_FILE") as refused:
        load_account(s)
    assert "wrong" not in str(refused.value)


def test_importing_the_chain_connector_keeps_the_recursion_limit_and_deep_json_is_refused():
    """py_ecc raises the limit to 100,000 on import (ethereum/py_ecc#134): a worker that
    imported web3 then died of SIGSEGV on a deeply nested JSON body instead of refusing it."""
    import subprocess
    import sys

    code = (
        "import sys; before = sys.getrecursionlimit()\n"
        "import intake.app, workers.pipeline, workers.periodic\n"
        "assert 'web3' not in sys.modules  # imported on first use only\n"
        "from shared.connectors.chain import web3_modules; web3_modules()\n"
        "assert sys.getrecursionlimit() == before, sys.getrecursionlimit()\n"
        "from intake.middleware import parse_json\n"
        "from intake.errors import ApiError\n"
        "try:\n"
        "    parse_json(b'[' * 100_000)\n"
        "except ApiError as exc:\n"
        "    print(exc.api_code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "invalid_json"), done.stderr[-2000:]
