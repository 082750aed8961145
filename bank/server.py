"""The sandbox bank's gRPC service over its Store, with authentication and fault injection."""

from __future__ import annotations

import hmac
import logging
import random
import threading
import time
from concurrent import futures

import grpc

from bank.store import ABORTED, COMMITTED, PREPARED, Answer, NoSuchAccount, Store
from shared.connectors.bankproto import bank_pb2 as pb
from shared.connectors.bankproto import bank_pb2_grpc as rpc

log = logging.getLogger("clearhouse.bank")

PROTOCOL_METHODS = ("Prepare", "Commit", "Abort", "Status", "Ping")
_STATES = {None: pb.UNKNOWN, PREPARED: pb.PREPARED, COMMITTED: pb.COMMITTED, ABORTED: pb.ABORTED}


class TokenAuth(grpc.ServerInterceptor):
    """Refuse every call without ``authorization: Bearer <BANK_TOKEN>`` (UNAUTHENTICATED)."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        def refuse(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bank token")

        self._refuse = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation, handler_call_details):
        sent = dict(handler_call_details.invocation_metadata or ()).get("authorization", "")
        # Constant time: the token is a shared secret.
        if hmac.compare_digest(str(sent).encode(), self._expected):
            return continuation(handler_call_details)
        return self._refuse


class Faults:
    """Latency then, with ``failure_rate``, UNAVAILABLE, on the named methods."""

    def __init__(self, latency_ms: int, failure_rate: float, methods: str):
        if latency_ms < 0 or not 0.0 <= failure_rate <= 1.0:
            raise ValueError("bank latency must be >= 0 and failure rate between 0 and 1")
        named = tuple(filter(None, (m.strip() for m in methods.split(","))))
        unknown = set(named) - set(PROTOCOL_METHODS)
        if unknown:
            raise ValueError(f"BANK_FAIL_METHODS names no protocol call: {sorted(unknown)}")
        self.latency_ms, self.failure_rate = latency_ms, failure_rate
        self.methods = named or PROTOCOL_METHODS
        self._rng, self._lock = random.Random(), threading.Lock()

    def apply(self, method: str, context, what: str) -> None:
        """Before ``method`` acts: the latency, then maybe a failure. ``what`` names the call."""
        if method not in self.methods:
            return
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        if not context.is_active():
            # The caller gave up (deadline, or it died) while we slept: acting now would
            # change the books behind the back of someone who never hears of it.
            log.info("%s: cancelled (the caller went away)", what)
            context.abort(grpc.StatusCode.CANCELLED, "caller went away")
        with self._lock:
            fail = self.failure_rate > 0 and self._rng.random() < self.failure_rate
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure")


def _tx_reply(answer: Answer) -> pb.TxReply:
    return pb.TxReply(
        ok=answer.ok,
        state=_STATES[answer.state],
        reason=answer.reason,
        prepared_at=answer.prepared_at,
        changed_at=answer.changed_at,
    )


def _amount(text: str, context, *, positive: bool = True) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0 and positive:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "amount must be a positive integer")
    return value


class BankService(rpc.BankServicer):
    def __init__(self, name: str, store: Store, faults: Faults):
        self.name, self.store, self.faults = name, store, faults

    def Prepare(self, request, context):  # noqa: N802 (gRPC's method names)
        self.faults.apply("Prepare", context, f"bank {self.name}: prepare {request.tx_id}")
        if not request.tx_id or not request.account:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tx_id and account are required")
        answer = self.store.prepare(
            request.tx_id,
            request.account,
            _amount(request.amount, context),
            request.currency,
            request.is_credit,
        )
        log.info(
            "bank %s: prepare %s %s %s: %s %s",
            self.name,
            request.tx_id,
            "credit" if request.is_credit else "debit",
            request.amount,
            "ready" if answer.ok else "refused",
            answer.reason,
        )
        return pb.PrepareReply(ready=answer.ok, reason=answer.reason, state=_STATES[answer.state])

    def Commit(self, request, context):  # noqa: N802
        self.faults.apply("Commit", context, f"bank {self.name}: commit {request.tx_id}")
        return self._logged("commit", self.store.commit(request.tx_id), request.tx_id)

    def Abort(self, request, context):  # noqa: N802
        self.faults.apply("Abort", context, f"bank {self.name}: abort {request.tx_id}")
        return self._logged("abort", self.store.abort(request.tx_id), request.tx_id)

    def Status(self, request, context):  # noqa: N802
        self.faults.apply("Status", context, f"bank {self.name}: status {request.tx_id}")
        return _tx_reply(self.store.status(request.tx_id))

    def Ping(self, request, context):  # noqa: N802
        self.faults.apply("Ping", context, f"bank {self.name}: ping")
        return pb.PingReply(name=self.name)

    def _logged(self, what: str, answer: Answer, tx_id: str) -> pb.TxReply:
        log.info("bank %s: %s %s: %s %s", self.name, what, tx_id, answer.ok, answer.reason)
        return _tx_reply(answer)

    def CreateAccount(self, request, context):  # noqa: N802
        if not request.owner or len(request.currency) not in range(3, 9):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "owner and currency are required")
        return pb.Account(**_strs(self.store.create_account(request.owner, request.currency)))

    def FundAccount(self, request, context):  # noqa: N802
        return self._account(
            context, self.store.fund, request.account, _amount(request.amount, context)
        )

    def GetAccount(self, request, context):  # noqa: N802
        return self._account(context, self.store.account, request.account)

    @staticmethod
    def _account(context, call, *args):
        try:
            return pb.Account(**_strs(call(*args)))
        except NoSuchAccount:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no such account: {args[0]}")


def _strs(account: dict) -> dict:
    return {k: str(v) for k, v in account.items()}


def serve(name: str, port: int, store: Store, faults: Faults, token: str, host="127.0.0.1"):
    """Start the gRPC server (not blocking); return it."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"bank-{name}"),
        interceptors=[TokenAuth(token)],
    )
    rpc.add_BankServicer_to_server(BankService(name, store, faults), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"bank {name}: cannot listen on {host}:{port}")
    server.start()
    return server


def cleanup_loop(name: str, store: Store, ttl_s: float, interval_s: float, stop: threading.Event):
    """Abort prepared transactions older than ``ttl_s``, every ``interval_s``, until ``stop``."""
    while not stop.wait(interval_s):
        try:
            for tx_id in store.expire(ttl_s):
                log.info(
                    "bank %s: expired %s (prepared over %g s ago): aborted", name, tx_id, ttl_s
                )
        except Exception:  # a locked file now and then must not end the loop
            log.exception("bank %s: cleanup failed", name)
