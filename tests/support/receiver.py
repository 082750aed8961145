"""A real webhook receiver for tests: verifies signatures as a merchant would, records events."""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.domain.webhooks import verify


@dataclass
class Received:
    event: dict
    received_at: float
    signature: str
    # Indexes into Receiver.secrets of every secret the signature verified with.
    verified_with: list[int] = field(default_factory=list)
    path: str = "/"
    host: str = ""  # the Host header
    body: bytes = b""  # the raw request body, as signed


class _Server(ThreadingHTTPServer):
    # Restart on the same port right after stop (TIME_WAIT must not block it).
    allow_reuse_address = True
    daemon_threads = True


class Receiver:
    """``mode``: "ok" (200), "echo" (200 answering the body it got, as some receivers
    do), "fail" (500 with a long body), "redirect" (302 to /moved).

    With ``tls`` (a server-side SSLContext) it speaks https and records in
    ``server_names`` the SNI name of every handshake (None: the client sent none).
    """

    def __init__(self, secrets: list[str], port: int, tls: ssl.SSLContext | None = None):
        self.secrets = list(secrets)
        self.port = port
        self.tls = tls
        self.server_names: list[str | None] = []
        self.mode = "ok"
        # Until this time.monotonic(), every request is answered 503.
        self.unavailable_until = 0.0
        self.received: list[Received] = []
        self.rejected = 0
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        self._server = _Server(("127.0.0.1", self.port), _handler(self))
        if self.tls is not None:
            self.tls.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def unavailable_for(self, seconds: float) -> None:
        """Answer 503 to everything for ``seconds`` (a receiver that is down)."""
        self.unavailable_until = time.monotonic() + seconds

    def ids(self) -> list[str]:
        with self._lock:
            return [r.event["id"] for r in self.received]

    def wait_for(self, predicate, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"receiver timed out; got {len(self.received)}"
            time.sleep(0.05)  # polling interval

    def _accept(self, path: str, body: bytes, signature: str, host: str = "") -> int:
        now = time.time()
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            if time.monotonic() < self.unavailable_until:
                return 503
            if self.mode == "fail":
                return 500
            if self.mode == "redirect":
                return 302
            good = [i for i, s in enumerate(self.secrets) if verify(signature, body, s, now)]
            if not good:
                self.rejected += 1
                return 400
            event = json.loads(body)
            self.received.append(Received(event, now, signature, good, path, host, body))
            return 200


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signature = self.headers.get("Clearhouse-Signature", "")
            status = receiver._accept(self.path, body, signature, self.headers.get("Host", ""))
            answer = b"x" * 5000 if status == 500 else b'{"received":true}'
            if status == 200 and receiver.mode == "echo":
                answer = body
            self.send_response(status)
            if status == 302:
                self.send_header("Location", f"http://127.0.0.1:{receiver.port}/moved")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):  # quiet test output
            pass

    return Handler
