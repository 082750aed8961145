"""Access tokens: fetched with the client's credentials, refreshed before they expire."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from clearhouse_client.errors import AuthenticationError, InvalidRequestError

# Refresh this long before the token's end, so no request leaves with a token that
# expires on its way (the API's tokens live 900 s).
REFRESH_MARGIN_S = 30.0

# Sends a token request body with a retry policy (None: the client's), returns the answer.
PostToken = Callable[[dict, Any], dict]


class Tokens:
    """One client's current access token; thread-safe, one fetch at a time."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        post_token: PostToken,
        scope: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client_id = client_id
        self._client_secret = client_secret
        self._post = post_token
        self._scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0

    def access_token(self, retry: Any = None) -> str:
        """A token good for at least REFRESH_MARGIN_S more (fetched or refreshed if not).

        ``retry``: the policy of the call that needs it, so that a call that may not
        wait (an offline drain) does not wait for its token either.
        """
        with self._lock:
            if self._access is None or self._clock() >= self._expires_at - REFRESH_MARGIN_S:
                self._renew(retry)
            return self._access

    def invalidate(self, token: str) -> None:
        """The API refused ``token`` (401 invalid_token): the next call gets another."""
        with self._lock:
            if self._access == token:
                self._expires_at = 0.0

    def _renew(self, retry: Any) -> None:
        answer = None
        if self._refresh is not None:
            try:
                body = self._grant("refresh_token", refresh_token=self._refresh)
                answer = self._post(body, retry)
            except (AuthenticationError, InvalidRequestError):
                # The family expired or was revoked: authenticate afresh.
                self._refresh = None
        if answer is None:
            answer = self._post(self._grant("client_credentials", scope=self._scope), retry)
        self._access = answer["access_token"]
        self._refresh = answer.get("refresh_token")
        self._expires_at = self._clock() + float(answer.get("expires_in") or 0)

    def _grant(self, grant_type: str, **extra: str | None) -> dict:
        body = {
            "grant_type": grant_type,
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        body.update({k: v for k, v in extra.items() if v is not None})
        return body
