"""One HTTP exchange over the standard library's http.client: no dependency to install.

Each thread keeps one keep-alive connection to the API. A connection that fails
in any way is closed and the failure raised as APIConnectionError; whoever
retries opens a new one (a POST is only ever resent with its Idempotency-Key).
"""

from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from clearhouse_client.errors import APIConnectionError

# What a keep-alive connection the server has closed fails with before any answer.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def ssl_context(
    verify: bool = True,
    ca_file: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """The TLS context: the system's CAs (or ``ca_file``), and a client certificate if given."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        # For a throwaway local stack only: nothing authenticates the server then.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


class Transport:
    """Sends requests to one base URL; thread-safe (a connection per thread)."""

    def __init__(self, base_url: str, timeout: float, context: ssl.SSLContext | None = None):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.context = context if parts.scheme == "https" else None
        self._local = threading.local()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it has served a request before."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self.context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self._local.conn = conn
        return conn, False

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Response:
        """One exchange; APIConnectionError when no complete answer arrived."""
        conn, reused = self._connection()
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        except _STALE as exc:
            self.close()
            if not reused:
                raise APIConnectionError(f"{method} {path}: no answer ({_describe(exc)})") from exc
            # The server closed an idle keep-alive connection: say it again on a new one
            # (safe: a POST carries its Idempotency-Key), once, not as a counted retry.
            return self.send(method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise APIConnectionError(f"{method} {path}: no answer ({_describe(exc)})") from exc
        if answer.will_close:
            self.close()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
