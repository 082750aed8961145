"""Every API call: the token, the Idempotency-Key, retries, and errors as exceptions."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from clearhouse_client._auth import Tokens
from clearhouse_client._http import Response, Transport
from clearhouse_client._retry import RetryPolicy
from clearhouse_client._version import __version__
from clearhouse_client.errors import ClearhouseError, from_response

log = logging.getLogger("clearhouse_client")

USER_AGENT = f"clearhouse-python/{__version__}"


def new_idempotency_key() -> str:
    """A fresh key for one logical request (every retry of it reuses this one)."""
    return str(uuid.uuid4())


def path_for(template: str, *ids: str) -> str:
    """``template`` with each ``{}`` filled by an id, quoted so an id can never add a path."""
    for value in ids:
        if not isinstance(value, str) or not value:
            raise ValueError(f"an id must be a non-empty string, not {value!r}")
    return template.format(*(quote(v, safe="") for v in ids))


class Requestor:
    def __init__(
        self,
        transport: Transport,
        client_id: str,
        client_secret: str,
        retry: RetryPolicy,
        scope: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.transport = transport
        self.retry = retry
        self._sleep = sleep
        self.tokens = Tokens(client_id, client_secret, self._post_token, scope)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        accept: str = "application/json",
        retry: RetryPolicy | None = None,
    ) -> Response:
        """Send, retrying what may succeed next time; raise the last error otherwise.

        Every POST carries an ``Idempotency-Key`` (``idempotency_key`` or a new one) and
        every retry of it carries the same one, so the API runs its effect once.
        """
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        data = None
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or new_idempotency_key()
            headers["Content-Type"] = "application/json"
            data = json.dumps(dict(body or {}), separators=(",", ":")).encode()
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        target = f"{path}?{urlencode(query)}" if query else path
        return self._with_retries(method, target, data, headers, retry or self.retry, auth=True)

    def json(self, method: str, path: str, **kwargs: Any) -> dict:
        return json.loads(self.request(method, path, **kwargs).body)

    def _with_retries(self, method, target, data, headers, policy, auth: bool) -> Response:
        retries, refreshed = 0, False
        while True:
            token = self.tokens.access_token(policy) if auth else None
            sent = {**headers, **({"Authorization": f"Bearer {token}"} if token else {})}
            try:
                response = self.transport.send(method, target, data, sent)
                if response.status < 400:
                    return response
                raise from_response(response.status, response.body, response.headers)
            except ClearhouseError as error:
                if auth and _token_refused(error) and not refreshed:
                    # Expired early or rotated away: one new token, then as before.
                    self.tokens.invalidate(token)
                    refreshed = True
                    continue
                if not policy.should_retry(error, retries):
                    raise
                retries += 1
                wait = policy.delay(error, retries)
                log.info("retry %d of %s %s in %.2f s: %s", retries, method, target, wait, error)
                self._sleep(wait)

    def _post_token(self, body: dict, retry: RetryPolicy | None) -> dict:
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
        }
        data = json.dumps(body).encode()
        policy = retry or self.retry
        answer = self._with_retries("POST", "/v1/oauth/token", data, headers, policy, False)
        return json.loads(answer.body)


def _token_refused(error: ClearhouseError) -> bool:
    return error.http_status == 401 and error.code == "invalid_token"


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
