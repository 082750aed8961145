"""The HTTP side of a webhook send: a pinned address, and a hard deadline on the exchange.

Each sender thread has its own pools (``pools()``). A pool connects to an
address the policy vetted, never to whatever the name resolves to by then,
while the Host header, SNI and the certificate check keep the URL's host name.
Pools are kept per (scheme, host, port, address), so connections to a receiver
are reused as long as it keeps resolving to the same address.
"""

from __future__ import annotations

import contextlib
import socket
import threading

import certifi
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout

from shared.domain.webhooks import Target

_local = threading.local()
# Pools one sender thread keeps open (least recently used closed first).
POOLS_PER_THREAD = 32


class Deadline:
    """Shuts the socket of this thread's send down once ``seconds`` have passed.

    urllib3's timeouts bound each socket operation, not the exchange: a
    receiver that drips a byte a second would hold a sender thread for as
    long as it likes. Shutting the socket down wakes the blocked read, which
    fails, and the thread is free again.
    """

    def __init__(self, seconds: float):
        self.expired = False
        self._conn: HTTPConnection | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        _local.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        _local.deadline = None
        with self._lock:  # a shutdown in progress finishes before the connection is reused
            self._conn = None

    def watch(self, conn: HTTPConnection) -> None:
        """``conn`` carries this send now; shut at once if the deadline has passed."""
        with self._lock:
            self._conn = conn
            if self.expired:
                _shutdown(conn)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._conn is not None:
                _shutdown(self._conn)


def _shutdown(conn: HTTPConnection) -> None:
    # shutdown, not close: close() from another thread does not wake a recv
    # blocked on the socket; urllib3 closes the broken connection itself.
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _watch(conn: HTTPConnection) -> None:
    deadline = getattr(_local, "deadline", None)
    if deadline is not None:
        deadline.watch(conn)


class _Watched:
    """urllib3 connection mixin: the current send's deadline can reach its socket."""

    def connect(self):
        _watch(self)  # so the deadline can cut a slow TLS handshake
        super().connect()
        _watch(self)  # the socket exists now, in case the deadline passed meanwhile

    def request(self, *args, **kwargs):
        _watch(self)  # a connection reused from the pool does not connect again
        return super().request(*args, **kwargs)


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class PinnedPools(PoolManager):
    """A PoolManager whose pools connect to a vetted address, named by the URL's host."""

    def __init__(self):
        super().__init__(num_pools=POOLS_PER_THREAD, maxsize=1)
        self.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def pool(self, target: Target, address: str, ca_file: str | None) -> HTTPConnectionPool:
        """The pool for ``target`` at ``address`` (one it vetted): it connects there only."""
        # server_hostname is part of the pool key (for http too), so two names
        # on one address never share a connection.
        kwargs: dict = {"server_hostname": target.host}
        if target.scheme == "https":
            # SNI and the certificate check name the host, not the address; the
            # chain is verified against ``ca_file`` (certifi's bundle by default).
            # Only for https: before urllib3 2.8 an http pool given assert_hostname
            # raised TypeError (urllib3/urllib3#5077).
            kwargs |= {
                "assert_hostname": target.host,
                "cert_reqs": "CERT_REQUIRED",
                "ca_certs": ca_file or certifi.where(),
            }
        return self.connection_from_host(address, target.port, target.scheme, kwargs)


def pools() -> PinnedPools:
    """This sender thread's pools (a connection is never shared between threads)."""
    found = getattr(_local, "pools", None)
    if found is None:
        found = _local.pools = PinnedPools()
    return found


def post(
    target: Target,
    request_uri: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    ca_file: str | None,
) -> BaseHTTPResponse:
    """POST to ``target`` (never following a redirect); the answer unread (stream it).

    Its addresses are tried in turn while a connection cannot be made (nothing
    was sent yet, so nothing is sent twice); any other failure is final.
    """
    *others, last = target.addresses
    for address in others:
        try:
            return _post_to(target, address, request_uri, body, headers, timeout_s, ca_file)
        except ConnectTimeoutError:  # NewConnectionError too: it is a subclass
            deadline = getattr(_local, "deadline", None)
            if deadline is not None and deadline.expired:
                raise  # the send's time is up: no further address
    return _post_to(target, last, request_uri, body, headers, timeout_s, ca_file)


def _post_to(target, address, request_uri, body, headers, timeout_s, ca_file):
    return (
        pools()
        .pool(target, address, ca_file)
        .urlopen(
            "POST",
            request_uri,
            body=body,
            # Host from the URL's name: urllib3 would otherwise send the address.
            headers={**headers, "Host": target.host_header},
            redirect=False,
            retries=False,  # one attempt: the schedule in Postgres retries
            timeout=Timeout(connect=timeout_s, read=timeout_s),
            preload_content=False,
            assert_same_host=False,
        )
    )


def finish(resp: BaseHTTPResponse) -> None:
    """Done with an answer: a connection whose answer was read to the end is reused."""
    # An answer read in full has already gone back to its pool; one cut short
    # (we keep only the first KiB) is closed, since its unread rest is in the socket.
    resp.close()
    resp.release_conn()
