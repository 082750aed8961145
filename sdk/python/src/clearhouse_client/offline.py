"""The durable offline queue: ``client.offline.submit(params)`` now, one intent each later.

``submit`` writes the intent's body and its Idempotency-Key to a local SQLite
file (fsynced) and returns a local id, whether or not the API is reachable.
``drain`` sends the items in order (first in, first out), each with its own key:

* before a send the item is recorded ``sending``; a crash after the API
  answered but before the answer was recorded leaves it so, and the next drain
  sends it again with the same key: the API replays its first answer, one intent;
* 200/202 → ``acknowledged`` with the intent id; a definitive refusal (400,
  404, 413, 415, 422) → ``rejected`` with the API's problem;
* no answer, 5xx, 429 or 409 in flight → back to ``queued`` and the drain stops
  there (later items wait, so order holds); 401/403 (the client's credentials,
  not the item) likewise, with the error in the result.

An answered item keeps its row (state, intent id or problem) but loses its body,
which may hold a card number; ``purge()`` deletes answered rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clearhouse_client._offline_store import OfflineItem, Store
from clearhouse_client._requestor import new_idempotency_key
from clearhouse_client._retry import NO_RETRIES, RetryPolicy, retryable
from clearhouse_client.errors import AuthenticationError, ClearhouseError, PermissionDeniedError

try:  # POSIX: one drainer at a time per file, released by the kernel if it dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: the API's idempotency still holds
    fcntl = None

log = logging.getLogger("clearhouse_client.offline")

CREATE_FIELDS = frozenset(
    {
        "amount",
        "currency",
        "payment_method",
        "priority",
        "capture_method",
        "description",
        "metadata",
        "customer",
    }
)
REQUIRED = ("amount", "currency", "payment_method")
MAX_KEY_LEN = 255

# Sends one create: (body, idempotency key, retry policy) -> the intent's id.
Send = Callable[[dict, str, RetryPolicy], str]


def default_path() -> Path:
    return Path.home() / ".clearhouse" / "offline.sqlite3"


@dataclass
class DrainResult:
    acknowledged: list[OfflineItem] = field(default_factory=list)
    rejected: list[OfflineItem] = field(default_factory=list)
    remaining: int = 0  # still queued (or sending) when the drain ended
    error: ClearhouseError | None = None  # what stopped it early, if anything
    busy: bool = False  # another drainer held the file: nothing was sent


class OfflineQueue:
    def __init__(self, path: str | os.PathLike, client_id: str, send: Send, retry=NO_RETRIES):
        self.store = Store(path, client_id)
        self.path = self.store.path
        self._send = send
        self._retry = retry
        self._drainer: Drainer | None = None

    def submit(self, params: dict[str, Any]) -> int:
        """Queue one intent (``create``'s fields, optional ``idempotency_key``); its local id."""
        body, key = _checked(params)
        local_id = self.store.add(key, body, _summary(body))
        if self._drainer is not None:
            self._drainer.wake()
        return local_id

    def items(self) -> list[OfflineItem]:
        """Every item of this client, oldest first, with its state."""
        return self.store.items()

    def purge(self) -> int:
        """Delete the acknowledged and rejected items; how many were deleted."""
        return self.store.purge()

    def drain(self, lock_timeout: float = 10.0) -> DrainResult:
        """Send what waits, in order, until it is all answered or an attempt fails."""
        with _drain_lock(self.path, lock_timeout) as locked:
            if not locked:
                return DrainResult(remaining=self.store.count_pending(), busy=True)
            return self._drain()

    def _drain(self) -> DrainResult:
        result = DrainResult()
        while (item := self.store.next_pending()) is not None:
            self.store.mark_sending(item.local_id)
            try:
                intent_id = self._send(item.params, item.idempotency_key, self._retry)
            except ClearhouseError as error:
                if retryable(error) or isinstance(
                    error, AuthenticationError | PermissionDeniedError
                ):
                    self.store.mark_unsent(item.local_id, str(error))
                    result.error = error
                    break
                problem = _problem(error)
                self.store.mark_rejected(item.local_id, problem)
                result.rejected.append(_answered(item, "rejected", problem=problem))
                continue
            self.store.mark_acknowledged(item.local_id, intent_id)
            result.acknowledged.append(_answered(item, "acknowledged", intent_id=intent_id))
        result.remaining = self.store.count_pending()
        return result

    def start(self, interval: float = 5.0) -> Drainer:
        """Drain in a background thread every ``interval`` seconds (and soon after a submit)."""
        if self._drainer is None or not self._drainer.is_alive():
            self._drainer = Drainer(self, interval)
            self._drainer.start()
        return self._drainer

    def stop(self) -> None:
        """Stop the background drainer, if one runs, and close this thread's file handle."""
        if self._drainer is not None:
            self._drainer.stop()
            self._drainer = None
        self.store.close()


class Drainer(threading.Thread):
    """The background drainer: ``stop()`` ends it after the send in progress, if any."""

    def __init__(self, queue: OfflineQueue, interval: float):
        super().__init__(name="clearhouse-offline-drainer", daemon=True)
        self.queue = queue
        self.interval = interval
        self.last: DrainResult | None = None
        self._stop_event = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = 30) -> None:
        self._stop_event.set()
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self._wake.clear()
                try:
                    self.last = self.queue.drain()
                except Exception:  # a full disk, a corrupt file: say so, keep trying
                    log.exception("offline drain failed")
                self._wake.wait(self.interval)
        finally:
            self.queue.store.close()


@contextlib.contextmanager
def _drain_lock(path: Path, timeout: float) -> Iterator[bool]:
    if fcntl is None:
        yield True
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)  # polling interval while another drain runs
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _checked(params: dict[str, Any]) -> tuple[dict, str]:
    """The body and the key, or ValueError naming what is wrong (nothing is written)."""
    if not isinstance(params, dict):
        raise ValueError("params must be a dict of the create fields")
    body = dict(params)
    key = body.pop("idempotency_key", None) or new_idempotency_key()
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    missing = [name for name in REQUIRED if body.get(name) is None]
    if missing:
        raise ValueError(f"missing required field(s): {', '.join(missing)}")
    amount = body["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError("amount must be a positive integer (minor units)")
    if not isinstance(body["currency"], str) or not isinstance(body["payment_method"], dict):
        raise ValueError("currency must be a string and payment_method a dict")
    if not (isinstance(key, str) and 1 <= len(key) <= MAX_KEY_LEN and key.isprintable()):
        raise ValueError("idempotency_key must be 1-255 printable characters")
    if not key.isascii() or key != key.strip():
        raise ValueError("idempotency_key must be ASCII without leading or trailing spaces")
    try:
        json.dumps(body)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params must be JSON values: {exc}") from None
    return {k: v for k, v in body.items() if v is not None}, key


def _summary(body: dict) -> dict:
    """What ``items()`` shows of a body: never the card number, only its last four."""
    method = body["payment_method"]
    shown = {"type": method.get("type")}
    number = (method.get("card") or {}).get("number") if method.get("type") == "card" else None
    if isinstance(number, str):
        shown["last4"] = number[-4:]
    if method.get("wallet_id"):
        shown["wallet_id"] = method["wallet_id"]
    return {"amount": body["amount"], "currency": body["currency"], "payment_method": shown}


def _answered(item: OfflineItem, state: str, **changes: Any) -> OfflineItem:
    """The item as its answer left it (what items() now shows)."""
    attempts = item.attempts + 1
    return dataclasses.replace(item, state=state, attempts=attempts, params=None, **changes)


def _problem(error: ClearhouseError) -> dict:
    return error.problem or {"status": error.http_status, "code": error.code, "detail": str(error)}
