"""The hard deadline of one webhook send, against a receiver that drips its answer."""

from __future__ import annotations

import itertools
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from shared.services.webhooks import Send


@dataclass
class DripConnection:
    accepted_at: float
    closed_at: float | None = None  # when the client closed (or reset) it


class DripServer:
    """Reads each HTTP request, then answers one header byte every ``interval`` s, forever.

    The first ``answer_first`` requests of a connection get a normal quick
    answer (keep-alive), so a reused connection can be made to drip too. A
    byte per ``interval`` is well inside a per-read timeout: only a deadline
    on the whole exchange ends it. Records when each connection opened and
    when the client closed it.
    """

    HEAD = b"HTTP/1.1 200 OK\r\nX-Drip: "
    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self, interval: float = 1.0, answer_first: int = 0):
        self.interval = interval
        self.answer_first = answer_first
        self.connections: list[DripConnection] = []
        self.max_open = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def open_now(self) -> int:
        with self._lock:
            return self._open()

    def _open(self) -> int:
        return sum(c.closed_at is None for c in self.connections)

    def start(self) -> DripServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = DripConnection(time.monotonic())
            with self._lock:
                self.connections.append(conn)
                self.max_open = max(self.max_open, self._open())
            threading.Thread(target=self._serve, args=(sock, conn), daemon=True).start()

    def _serve(self, sock: socket.socket, conn: DripConnection) -> None:
        try:
            buf = b""
            for served in itertools.count():
                buf = self._read_request(sock, buf)
                if buf is None:
                    return
                if served >= self.answer_first:
                    self._drip(sock)
                    return
                sock.sendall(self.OK)
        except OSError:
            pass
        finally:
            with self._lock:
                conn.closed_at = time.monotonic()
            sock.close()

    def _drip(self, sock: socket.socket) -> None:
        answer = itertools.chain(self.HEAD, itertools.repeat(ord("a")))
        for byte in answer:
            if self._stopped.is_set():
                return
            sock.sendall(bytes([byte]))
            # Paces the drip and notices at once when the client closes.
            readable, _, _ = select.select([sock], [], [], self.interval)
            if readable and not sock.recv(4096):
                return

    @staticmethod
    def _read_request(sock: socket.socket, buf: bytes) -> bytes | None:
        """Consume one request (headers and body); the bytes after it, or None at EOF."""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            rest += chunk
        return rest[length:]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling interval


BUDGET = 1.0


@pytest.fixture
def post(monkeypatch):
    """``post(url)`` from one sender thread (its own pools), failing rather than hanging."""
    from workers import notifications

    # Per-read timeout stays at its default (10 s): only the deadline can end a drip.
    monkeypatch.setattr(notifications, "send_budget_s", lambda: BUDGET)
    sender = ThreadPoolExecutor(max_workers=1)

    def post(url: str):
        send = Send("whd_test", "mch_test", url, 0, datetime.now(UTC), b"{}", ("whsec_test",))
        return sender.submit(notifications.post, send).result(timeout=BUDGET + 2)

    yield post
    sender.shutdown(wait=False)


@pytest.fixture
def drip():
    servers = []

    def start(**kwargs) -> DripServer:
        servers.append(DripServer(**kwargs).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_a_dripping_receiver_is_cut_off_at_the_deadline(post, drip):
    server = drip(interval=0.2)
    started = time.monotonic()
    outcome = post(server.url)
    took = time.monotonic() - started
    assert outcome.error == "deadline exceeded" and outcome.status_code is None
    assert BUDGET <= took < BUDGET + 0.5
    # The socket itself was shut down (not merely given up on): the receiver sees it.
    wait_until(lambda: server.open_now() == 0, 2, "the receiver to see the close")
    (conn,) = server.connections
    assert conn.closed_at - conn.accepted_at < BUDGET + 0.5


def test_a_reused_connection_is_cut_off_too(post, drip):
    server = drip(interval=0.2, answer_first=1)
    first = post(server.url)
    assert (first.status_code, first.error, first.response_body) == (200, None, "ok")
    started = time.monotonic()
    second = post(server.url)  # same thread: same pool, same kept-alive socket
    assert second.error == "deadline exceeded"
    assert time.monotonic() - started < BUDGET + 0.5
    wait_until(lambda: server.open_now() == 0, 2, "the receiver to see the close")
    assert len(server.connections) == 1
