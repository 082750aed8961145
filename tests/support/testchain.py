"""Ethereum test chains: in-process (eth-tester on py-evm) and clearhouse-devchain as a process."""

from __future__ import annotations

import secrets

# tests/conftest.py has imported these once already through web3_modules(), which
# keeps the interpreter's recursion limit (py_ecc raises it on its first import).
from eth_account import Account
from web3 import EthereumTesterProvider, Web3

from shared.connectors.chain import AnchorChain
from tests.conftest import free_port, python_bin
from tests.support.processes import Process

# eth-tester's chain id (py-evm's default): what ANCHOR_CHAIN_ID must say.
DEV_CHAIN_ID = 131277322940537


def in_process_chain() -> AnchorChain:
    """A fresh in-memory chain and a funded account of the test's own; every send is mined."""
    w3 = Web3(EthereumTesterProvider())
    account = Account.from_key(secrets.token_bytes(32))
    fund = w3.eth.send_transaction(
        {"from": w3.eth.accounts[0], "to": account.address, "value": 10**18}
    )
    w3.eth.wait_for_transaction_receipt(fund)
    return AnchorChain(w3, account, w3.eth.chain_id)


def node_of(chain: AnchorChain):
    """The eth-tester behind an in-process chain (to stop and resume mining)."""
    return chain.w3.provider.ethereum_tester


def devchain_env(port: int | None = None) -> dict:
    """ANCHOR_* for a devchain on ``port`` (a free one if None), with a fresh key of its own."""
    return {
        "ANCHOR_RPC_URL": f"http://127.0.0.1:{port or free_port()}",
        "ANCHOR_PRIVATE_KEY": "0x" + secrets.token_hex(32),
        "ANCHOR_CHAIN_ID": str(DEV_CHAIN_ID),
    }


def devchain(env: dict) -> Process:
    """``clearhouse-devchain`` where ``env`` (devchain_env) says, funding its key."""
    port = env["ANCHOR_RPC_URL"].rsplit(":", 1)[1]
    # `python -m`: the same main as the console script, which only an install of
    # this checkout's pyproject.toml puts in the venv's bin/.
    argv = [python_bin("python"), "-m", "cli.devchain", "--port", port]
    p = Process("devchain", argv, {"ANCHOR_PRIVATE_KEY": env["ANCHOR_PRIVATE_KEY"]})
    try:
        p.wait_for("devchain: chain", timeout=60)
    except RuntimeError:
        p.stop()
        raise
    return p
