"""An Ethereum-compatible chain through web3.py: sign, send and read anchor transactions.

An anchor is a zero-value transaction from our account to itself whose data is
a seal hash: no contract to deploy, and anyone can read it back by its hash.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from shared.domain.anchors import OnChain

if TYPE_CHECKING:
    from web3 import Web3


@functools.cache
def web3_modules() -> SimpleNamespace:
    """eth-account and web3, imported on first use (about 1.3 s of a process's start-up,
    which a worker with anchoring off never needs to pay).

    py_ecc, which eth-account imports, raises the interpreter's recursion limit to
    100,000 when it is imported (py_ecc/__init__.py; the crash it causes: upstream
    ethereum/py_ecc#134). Past about 20,000 frames CPython overflows its C stack, so
    a deeply nested JSON document then kills the process with SIGSEGV instead of
    raising RecursionError (seen: a test worker crashed parsing 100,000 "[").
    Anchoring never calls the pairing code the limit was raised for: put it back.
    """
    limit = sys.getrecursionlimit()
    from eth_account import Account
    from web3 import Web3
    from web3.exceptions import TransactionNotFound

    sys.setrecursionlimit(limit)
    return SimpleNamespace(Account=Account, Web3=Web3, TransactionNotFound=TransactionNotFound)


# Intrinsic gas of a plain transaction, and per byte of its data (EIP-2028).
BASE_GAS, ZERO_BYTE_GAS, DATA_BYTE_GAS = 21_000, 4, 16
# Refusals of a resent transaction that mean "the node has it already".
_KNOWN = ("already known", "known transaction", "already imported", "already in pool")


class ChainError(Exception):
    """The chain cannot be used: unreachable, another chain, or a bad key."""


class NonceTaken(ChainError):
    """The transaction's nonce was used by another transaction of the account."""


def load_account(settings):
    """The anchoring account: ANCHOR_PRIVATE_KEY, or the keystore file and its password."""
    Account = web3_modules().Account
    if settings.anchor_private_key:
        return Account.from_key(settings.anchor_private_key)
    if not settings.anchor_keystore_file:
        raise ChainError("no anchoring key: set ANCHOR_PRIVATE_KEY or ANCHOR_KEYSTORE_FILE")
    try:
        keystore = json.loads(Path(settings.anchor_keystore_file).read_text())
        password = Path(settings.anchor_keystore_password_file).read_text().rstrip("\n")
        return Account.from_key(Account.decrypt(keystore, password))
    except (OSError, ValueError) as exc:
        # Account.decrypt raises ValueError on a wrong password: never quote either.
        raise ChainError(f"cannot open ANCHOR_KEYSTORE_FILE: {type(exc).__name__}") from None


class AnchorChain:
    """One chain, one signing account; every call may raise ChainError."""

    def __init__(
        self, w3: Web3, account, chain_id: int, url: str = "the node", confirmations: int = 1
    ):
        self.w3, self.account, self.chain_id, self.url = w3, account, chain_id, url
        self.confirmations = confirmations

    @classmethod
    def from_settings(cls, settings) -> AnchorChain:
        """The chain of ANCHOR_RPC_URL, checked to be ANCHOR_CHAIN_ID's."""
        if not settings.anchor_rpc_url:
            raise ChainError("ledger anchoring is off: ANCHOR_RPC_URL is not set")
        Web3 = web3_modules().Web3
        provider = Web3.HTTPProvider(
            settings.anchor_rpc_url, request_kwargs={"timeout": settings.anchor_timeout_s}
        )
        chain = cls(
            Web3(provider),
            load_account(settings),
            settings.anchor_chain_id,
            "ANCHOR_RPC_URL",
            settings.anchor_confirmations,
        )
        chain.check()
        return chain

    @property
    def address(self) -> str:
        return self.account.address

    def check(self) -> None:
        """Raise ChainError unless the node answers and is on ``chain_id``."""
        found = self._call(lambda: self.w3.eth.chain_id)
        if found != self.chain_id:
            raise ChainError(
                f"ANCHOR_CHAIN_ID is {self.chain_id} but {self.url} is chain {found}:"
                " refusing to sign for another chain"
            )

    def next_nonce(self) -> int:
        """The account's next nonce, counting transactions still pending at the node."""
        return self._call(lambda: self.w3.eth.get_transaction_count(self.address, "pending"))

    def mined_nonce(self) -> int:
        """How many of the account's transactions are mined."""
        return self._call(lambda: self.w3.eth.get_transaction_count(self.address, "latest"))

    def sign(self, data: bytes, nonce: int) -> tuple[str, bytes]:
        """(transaction hash, raw signed transaction) carrying ``data``, not sent."""
        gas = BASE_GAS + sum(DATA_BYTE_GAS if b else ZERO_BYTE_GAS for b in data)
        block = self._call(lambda: self.w3.eth.get_block("latest"))
        tip = self._call(lambda: self.w3.eth.max_priority_fee)
        tx = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": self.address,
            "value": 0,
            "data": data,
            "gas": gas,
            # Twice the base fee: still mined if it doubles meanwhile.
            "maxFeePerGas": 2 * block["baseFeePerGas"] + tip,
            "maxPriorityFeePerGas": tip,
        }
        signed = self.account.sign_transaction(tx)
        return "0x" + signed.hash.hex().removeprefix("0x"), bytes(signed.raw_transaction)

    def broadcast(self, raw: bytes) -> None:
        """Send a signed transaction; sending one the node already has is not an error."""
        try:
            self._call(lambda: self.w3.eth.send_raw_transaction(raw))
        except ChainError:
            raise
        except Exception as exc:
            text = str(exc).lower()
            if any(k in text for k in _KNOWN):
                return
            if "nonce" in text:
                raise NonceTaken(str(exc)) from None
            raise ChainError(f"{self.url} refused the transaction: {exc}") from None

    def block_of(self, tx_hash: str) -> int | None:
        """The block that mined ``tx_hash``, or None (pending or unknown)."""
        try:
            receipt = self._call(lambda: self.w3.eth.get_transaction_receipt(tx_hash))
        except web3_modules().TransactionNotFound:
            return None
        return receipt["blockNumber"]

    def final(self, block: int) -> bool:
        """Whether ``confirmations`` blocks (``block`` included) are on the chain from ``block``."""
        if self.confirmations <= 1:
            return True
        return self._call(lambda: self.w3.eth.block_number) - block + 1 >= self.confirmations

    def lookup(self, tx_hash: str) -> OnChain:
        """What the chain holds under ``tx_hash``."""
        try:
            tx = self._call(lambda: self.w3.eth.get_transaction(tx_hash))
        except web3_modules().TransactionNotFound:
            return OnChain(None, None, None)
        return OnChain(bytes(tx["input"]), tx["from"], tx["blockNumber"])

    def _call(self, fn):
        try:
            return fn()
        except web3_modules().TransactionNotFound:
            raise
        except OSError as exc:
            # requests' ConnectionError and Timeout are OSErrors.
            raise ChainError(f"cannot reach {self.url}: {type(exc).__name__}") from None
