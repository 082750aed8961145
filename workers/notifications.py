"""Webhook delivery tasks (notifications queue): claim, POST concurrently, record.

The batch task only claims and prepares its deliveries, then hands them to
sender threads and returns. Each send has a hard deadline, at most
``WEBHOOK_MERCHANT_CONCURRENCY`` of a merchant's sends are in flight at once, and a
recorder thread stores the outcomes. So a slow receiver holds neither the
task (and with it every other merchant's next batch) nor every sender thread.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from urllib3.util import parse_url

from shared.db.faults import is_transient
from shared.db.uow import transact
from shared.domain import webhooks as W
from shared.observability import metrics
from shared.services import webhooks
from shared.services.webhook_endpoints import pin
from shared.services.webhooks import Outcome, Send
from workers import webhook_http
from workers.base import stage
from workers.celery_app import app

log = logging.getLogger(__name__)

USER_AGENT = "clearhouse-webhooks/1"
# Sends in flight at once. One pool for the process (not one per task), and
# connection pools per thread (workers/webhook_http.py), so connections to a
# receiver are reused.
SENDERS = 16
# Tries to store a batch of outcomes when the database is briefly away.
STORE_TRIES = 3
_pool = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="webhook")


def _settings():
    # The Celery app's settings, read when used (never at import).
    return app.runtime.settings


def send_budget_s() -> float:
    # urllib3's timeout is per socket operation, so a receiver that drips its
    # answer could hold a send far longer: at this deadline its socket is
    # shut down and the attempt has failed.
    return 3 * _settings().webhook_timeout_s


def wait_max_s() -> float:
    # How long a delivery may wait for one of its merchant's slots (or a
    # sender thread). A healthy receiver frees a slot in milliseconds; past
    # this the merchant is slow, and the delivery goes back to the
    # dispatcher rather than holding its lease behind that merchant.
    return _settings().webhook_timeout_s


def lease_s() -> float:
    # Longer than waiting for a slot, the send and recording together, so a
    # delivery is never claimed again while it still waits or is in flight.
    return wait_max_s() + send_budget_s() + 30


@stage("deliver_webhooks", isolate=False)
def deliver_webhooks(self, uow, ids: list[str]):
    # celery-batches gathers the many small messages (one per committed state
    # change) into batches of up to batch_max deliveries. Deliveries that can
    # never be sent (secret that does not decrypt, merchant or event gone) are
    # failed here; the others are sent once their lease is committed.
    sends = webhooks.prepare(uow, self.runtime.vault, webhooks.claim(uow, ids, lease_s()))
    uow.on_commit(lambda: _lanes().start(sends))


class _Lanes:
    """Hands sends to the pool, at most ``cap`` in flight per merchant.

    Over the cap a send waits in its merchant's own lane, never in the pool's
    shared queue, so only that merchant's deliveries wait behind its sends;
    and one that waited longer than ``wait_max_s()`` is not sent but released
    to the dispatcher.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[Send, float]]] = {}

    def start(self, sends: list[Send]) -> None:
        if not sends:
            return
        _recorder().ensure_running()
        now = time.monotonic()
        ready = []
        with self._lock:
            for send in sends:
                m = send.merchant_id
                if self._in_flight.get(m, 0) < self.cap:
                    self._in_flight[m] = self._in_flight.get(m, 0) + 1
                    ready.append((send, now))
                else:
                    self._waiting.setdefault(m, deque()).append((send, now))
        for send, queued_at in ready:
            _pool.submit(self._run, send, queued_at)

    def _run(self, send: Send, queued_at: float) -> None:
        try:
            if time.monotonic() - queued_at > wait_max_s():
                _recorder().put(send, None)
            else:
                _recorder().put(send, post(send))
        finally:
            self._next(send.merchant_id)

    def _next(self, merchant_id: str) -> None:
        """Pass the slot just freed to the merchant's next waiting send, if any."""
        with self._lock:
            lane = self._waiting.get(merchant_id)
            if lane:
                item = lane.popleft()
                if not lane:
                    del self._waiting[merchant_id]
            else:
                item = None
                self._in_flight[merchant_id] -= 1
                if not self._in_flight[merchant_id]:
                    del self._in_flight[merchant_id]
        if item is not None:
            _pool.submit(self._run, *item)


class _Recorder:
    """A thread that stores finished sends, as many per transaction as are ready."""

    def __init__(self):
        self._queue: queue.SimpleQueue[tuple[Send, Outcome | None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid: int | None = None

    def put(self, send: Send, outcome: Outcome | None) -> None:
        """Queue an outcome to store; ``None``: not sent, its lease is to be released."""
        self._queue.put((send, outcome))

    def ensure_running(self) -> None:
        # Started in the process that sends (a prefork child, or the solo
        # worker): a thread started before a fork does not run in the child.
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._loop, name="webhook-recorder", daemon=True).start()

    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            # Linger like a stage does (BATCH_INTERVAL_MS): the sends of one batch
            # finish within milliseconds of each other, and storing them together
            # is one transaction instead of one each. Only the recording waits,
            # never a send; the lease is far longer.
            until = time.monotonic() + _settings().batch_interval_ms / 1000
            while len(items) < _settings().batch_max:
                try:
                    items.append(self._queue.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            try:
                self._store(items)
            except Exception:
                # This thread must outlive any one batch; those leases run out.
                log.exception("storing %d webhook outcomes failed", len(items))

    def _store(self, items: list[tuple[Send, Outcome | None]]) -> None:
        sent = [(s, o) for s, o in items if o is not None]
        unsent = [s for s, o in items if o is None]
        metrics.webhook_attempts([o for _, o in sent])
        for attempt in range(1, STORE_TRIES + 1):
            try:
                transact(app.runtime.uow, _record, sent, unsent)
                return
            except Exception as exc:
                if attempt == STORE_TRIES or not is_transient(exc):
                    # Lost, not wrong: the leases run out and these are sent again.
                    log.exception("storing %d webhook outcomes failed", len(items))
                    return
                time.sleep(attempt)


@functools.cache
def _lanes() -> _Lanes:
    # Sends of one merchant in flight at once (per worker process), so that
    # one slow merchant cannot take every sender thread: well under SENDERS.
    return _Lanes(_settings().webhook_merchant_concurrency)


@functools.cache
def _recorder() -> _Recorder:
    return _Recorder()


def post(send: Send) -> Outcome:
    """POST one signed event; never raises (every failure is an attempt outcome)."""
    settings = _settings()
    # Resolved here, once, and vetted: the connection goes to this address and
    # the name is never resolved again (DNS rebinding cannot reach past it).
    target, reason = pin(send.url, settings.webhook_allow_private)
    if target is None:
        # Nothing left this worker: no status, no answer to show the merchant.
        return Outcome(error=f"refused: {reason}")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Clearhouse-Signature": W.sign(list(send.secrets), send.body, int(time.time())),
    }
    started = time.monotonic()
    with webhook_http.Deadline(send_budget_s()) as deadline:
        try:
            resp = webhook_http.post(
                target,
                parse_url(send.url).request_uri,
                send.body,
                headers,
                timeout_s=settings.webhook_timeout_s,
                ca_file=settings.webhook_ca_file,
            )
            # Read at most what we store: a huge answer must not fill our memory.
            try:
                text = resp.read(webhooks.RESPONSE_BODY_MAX, decode_content=True)
            finally:
                webhook_http.finish(resp)
        except Exception as exc:
            # Any failure (connecting, TLS, reading) is a failed attempt.
            # Class name only: messages can carry the URL's query string.
            error = "deadline exceeded" if deadline.expired else type(exc).__name__
            log.info("webhook %s failed: %s", send.delivery_id, error)
            return Outcome(latency_ms=_ms(started), error=error)
    error = None
    if 300 <= resp.status < 400:
        error = "redirect not followed"
    return Outcome(
        status_code=resp.status,
        latency_ms=_ms(started),
        response_body=text.decode("utf-8", "replace"),
        error=error,
    )


def _record(uow, sent: list[tuple[Send, Outcome]], unsent: list[Send]) -> None:
    settings = app.runtime.settings
    if sent:
        webhooks.record_attempts(
            uow,
            [s for s, _ in sent],
            [o for _, o in sent],
            max_age_s=settings.webhook_max_age_s,
            scale=settings.webhook_schedule_scale,
        )
    webhooks.release(uow, unsent)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
