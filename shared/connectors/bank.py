"""The gateway's client of the sandbox banks (gRPC, shared token), one channel per bank.

Every protocol call has the deadline ``bank_rpc_timeout_s``; no answer in time, a
refused connection or any other gRPC error is ``BankUnavailable``, which the
coordinator treats as a "no" vote before the decision and as "try again" after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import grpc

from shared.connectors.bankproto import bank_pb2 as pb
from shared.connectors.bankproto import bank_pb2_grpc as rpc

STATES = {
    pb.UNKNOWN: None,
    pb.PREPARED: "prepared",
    pb.COMMITTED: "committed",
    pb.ABORTED: "aborted",
}


# A channel that failed to connect backs off before trying again, and a call made
# meanwhile fails at once: a bank back from a restart would look down for up to
# gRPC's default 120 s. So calls wait for the channel (wait_for_ready) within their
# deadline, and reconnects are tried at most a second apart.
_CHANNEL = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class BankUnavailable(Exception):
    """The bank did not answer (down, too slow, or refused the connection)."""


class UnknownBank(LookupError):
    pass


@dataclass(frozen=True)
class Reply:
    ok: bool  # Prepare: ready; Commit/Abort: done
    state: str | None
    reason: str = ""
    prepared_at: float = 0.0
    changed_at: float = 0.0


class Banks:
    def __init__(self, addresses, token: str, timeout_s: float):
        self.addresses = dict(addresses)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout_s
        self._stubs: dict[str, rpc.BankStub] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> Banks:
        return cls(settings.bank_addresses, settings.bank_token, settings.bank_rpc_timeout_s)

    def _stub(self, bank: str) -> rpc.BankStub:
        with self._lock:
            stub = self._stubs.get(bank)
            if stub is None:
                if bank not in self.addresses:
                    raise UnknownBank(bank)
                channel = grpc.insecure_channel(self.addresses[bank], options=_CHANNEL)
                stub = rpc.BankStub(channel)
                self._stubs[bank] = stub
            return stub

    def _call(self, bank: str, method: str, request):
        try:
            return getattr(self._stub(bank), method)(
                request, timeout=self._timeout, metadata=self._metadata, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise BankUnavailable(f"{bank}: {exc.code().name}: {exc.details()}") from None

    def prepare(self, bank, tx_id, account, amount: int, currency, is_credit: bool) -> Reply:
        """Ask ``bank`` to reserve (debit) or expect (credit) ``amount``: ready or refused."""
        r = self._call(
            bank,
            "Prepare",
            pb.PrepareRequest(
                tx_id=tx_id,
                account=account,
                amount=str(amount),
                currency=currency,
                is_credit=is_credit,
            ),
        )
        return Reply(r.ready, STATES[r.state], r.reason)

    def commit(self, bank: str, tx_id: str) -> Reply:
        return self._tx(bank, "Commit", tx_id)

    def abort(self, bank: str, tx_id: str) -> Reply:
        return self._tx(bank, "Abort", tx_id)

    def status(self, bank: str, tx_id: str) -> Reply:
        return self._tx(bank, "Status", tx_id)

    def _tx(self, bank: str, method: str, tx_id: str) -> Reply:
        r = self._call(bank, method, pb.TxRequest(tx_id=tx_id))
        return Reply(r.ok, STATES[r.state], r.reason, r.prepared_at, r.changed_at)

    def ping(self, bank: str) -> str:
        return self._call(bank, "Ping", pb.PingRequest()).name

    # Set-up (the CLI)

    def create_account(self, bank: str, owner: str, currency: str) -> dict:
        return _account(
            self._call(
                bank, "CreateAccount", pb.CreateAccountRequest(owner=owner, currency=currency)
            )
        )

    def fund(self, bank: str, account: str, amount: int) -> dict:
        return _account(
            self._call(
                bank, "FundAccount", pb.FundAccountRequest(account=account, amount=str(amount))
            )
        )

    def account(self, bank: str, account: str) -> dict:
        """The account's balance and reservation; LookupError when the bank has no such account."""
        try:
            r = self._stub(bank).GetAccount(
                pb.GetAccountRequest(account=account),
                timeout=self._timeout,
                metadata=self._metadata,
                wait_for_ready=True,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise LookupError(f"{bank} has no account {account}") from None
            raise BankUnavailable(f"{bank}: {exc.code().name}: {exc.details()}") from None
        return _account(r)


def _account(r: pb.Account) -> dict:
    return {
        "account": r.account,
        "owner": r.owner,
        "currency": r.currency,
        "balance": int(r.balance),
        "reserved": int(r.reserved),
    }
