"""Webhook delivery tasks (notifications queue): claim, POST concurrently, record."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import requests

from shared.config import get_settings
from shared.domain import webhooks as W
from shared.observability import metrics
from shared.services import webhooks
from shared.services.webhook_endpoints import resolve
from shared.services.webhooks import Outcome, Send
from workers import runtime
from workers.base import batch_task

log = logging.getLogger(__name__)
settings = get_settings()

USER_AGENT = "clearhouse-webhooks/1"
# Sends in flight at once. One pool for the process (not one per task), and
# one HTTP session per thread, so connections to a receiver are reused.
SENDERS = 16
_pool = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="webhook")
_local = threading.local()


def send_budget_s() -> float:
    # requests' timeout is per socket operation, so a receiver that drips its
    # answer could hold a send far longer: past this the attempt is a failure.
    return 3 * settings.webhook_timeout_s


def lease_s() -> float:
    # Longer than the send budget plus recording, so a delivery is never
    # claimed again while its send is still in flight.
    return send_budget_s() + 30


@batch_task("clearhouse.deliver_webhooks", "deliver_webhooks")
def deliver_webhooks(ids: list[str]):
    # celery-batches gathers the many small messages (one per committed
    # state change) into batches of up to batch_max deliveries.
    with runtime.uow() as uow:
        claimed = webhooks.claim(uow.conn, ids, lease_s())
        sends = webhooks.prepare(uow.conn, runtime.vault(), claimed)
        uow.commit()
    if not sends:
        return
    outcomes = send_all(sends)
    metrics.webhook_attempts(outcomes)
    with runtime.uow() as uow:
        webhooks.record_attempts(
            uow.conn,
            sends,
            outcomes,
            max_age_s=settings.webhook_max_age_s,
            scale=settings.webhook_schedule_scale,
        )
        uow.commit()


def send_all(sends: list[Send]) -> list[Outcome]:
    """POST every delivery concurrently; one still running after the budget has failed."""
    futures = [_pool.submit(post, send) for send in sends]
    done, _ = wait(futures, timeout=send_budget_s())
    # Don't wait for stragglers: their sockets time out on their own. If one
    # still arrives, the retry makes it a duplicate, which receivers dedupe.
    for f in futures:
        if f not in done:
            f.cancel()
    return [f.result() if f in done else Outcome(error="send budget exceeded") for f in futures]


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.trust_env = False  # no proxies or netrc from the environment
    return session


def post(send: Send) -> Outcome:
    """POST one signed event; never raises (every failure is an attempt outcome)."""
    # Checked again at send time: DNS may now point somewhere it did not
    # when the URL was configured (rebinding).
    ok, reason = W.url_allowed(send.url, settings.webhook_allow_private, resolve)
    if not ok:
        return Outcome(error=f"refused: {reason}")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Clearhouse-Signature": W.sign(list(send.secrets), send.body, int(time.time())),
    }
    started = time.monotonic()
    try:
        resp = _session().post(
            send.url,
            data=send.body,
            headers=headers,
            timeout=settings.webhook_timeout_s,
            allow_redirects=False,
            stream=True,
        )
        # Read at most what we store: a huge answer must not fill our memory.
        with resp:
            text = resp.raw.read(webhooks.RESPONSE_BODY_MAX, decode_content=True)
    except Exception as exc:
        # Any failure (requests', or urllib3's while reading) is a failed
        # attempt. Class name only: messages can carry the URL's query string.
        log.info("webhook %s failed: %s", send.delivery_id, type(exc).__name__)
        return Outcome(latency_ms=_ms(started), error=type(exc).__name__)
    error = None
    if 300 <= resp.status_code < 400:
        error = "redirect not followed"
    return Outcome(
        status_code=resp.status_code,
        latency_ms=_ms(started),
        response_body=text.decode("utf-8", "replace"),
        error=error,
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
