"""``Client(client_id, client_secret, base_url)``: the entry point of the SDK."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from clearhouse_client._http import Transport, ssl_context
from clearhouse_client._requestor import Requestor
from clearhouse_client._retry import NO_RETRIES, RetryPolicy
from clearhouse_client.offline import OfflineQueue, default_path
from clearhouse_client.resources import (
    BalanceResource,
    Customers,
    Events,
    PaymentIntents,
    Refunds,
    Reports,
    WebhookDeliveries,
    WebhookEndpoints,
)

DEFAULT_BASE_URL = "https://127.0.0.1:8000"


class Client:
    """A merchant's API client: its token, retries on one idempotency key, the offline queue.

    ``ca_file``: a CA bundle to trust instead of the system's (``make run``'s dev CA);
    ``verify=False`` trusts any server (throwaway local stacks only); ``client_cert`` and
    ``client_key``: the TLS client certificate when the API requires one.
    ``max_retries`` bounds the retries of one call; ``offline_path`` is the offline
    queue's SQLite file (default ``~/.clearhouse/offline.sqlite3``).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        ca_file: str | None = None,
        verify: bool = True,
        client_cert: str | None = None,
        client_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        retry: RetryPolicy | None = None,
        scope: str | None = None,
        offline_path: str | os.PathLike | None = None,
        offline_retry: RetryPolicy = NO_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret are required")
        context = None
        if base_url.startswith("https:"):
            context = ssl_context(verify, ca_file, client_cert, client_key)
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        transport = Transport(self.base_url, timeout, context)
        policy = retry or RetryPolicy(max_retries=max_retries)
        self._requestor = Requestor(transport, client_id, client_secret, policy, scope, sleep)
        self.payment_intents = PaymentIntents(self._requestor)
        self.refunds = Refunds(self._requestor)
        self.events = Events(self._requestor)
        self.webhook_deliveries = WebhookDeliveries(self._requestor)
        self.webhook_endpoints = WebhookEndpoints(self._requestor)
        self.balance = BalanceResource(self._requestor)
        self.customers = Customers(self._requestor)
        self.reports = Reports(self._requestor)
        self._offline_path = offline_path or default_path()
        self._offline_retry = offline_retry
        self._offline: OfflineQueue | None = None

    @property
    def offline(self) -> OfflineQueue:
        """The offline queue (its file is created on first use)."""
        if self._offline is None:
            self._offline = OfflineQueue(
                self._offline_path, self.client_id, self._send_queued, self._offline_retry
            )
        return self._offline

    def _send_queued(self, body: dict, key: str, retry: RetryPolicy) -> str:
        answer = self._requestor.json(
            "POST", "/v1/payment_intents", body=body, idempotency_key=key, retry=retry
        )
        return answer["id"]

    def close(self) -> None:
        """Stop the background drainer (if started) and close this thread's connection."""
        if self._offline is not None:
            self._offline.stop()
        self._requestor.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
