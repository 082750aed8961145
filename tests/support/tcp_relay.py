"""A TCP relay in front of the API: a client's connections from an address of its own, and
the means to hold back the API's answers (the window between a send and its record).

Requests pass through byte for byte. Answers are read one HTTP/1.1 message at a time
(the API's have a Content-Length) and passed on, unless ``hold_intents_after`` is
set: then every answer that is a payment intent after that many is kept in ``held``
and never reaches the client, which waits for it as for a slow network, while the
API has already made the intent. With the upstream down, each connection is closed
at once (the client sees no answer, as when the API is stopped).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading


class Relay:
    def __init__(self, upstream_port: int, source_ip: str):
        self.upstream = ("127.0.0.1", upstream_port)
        self.source_ip = source_ip
        self.hold_intents_after: int | None = None
        self.intents_passed = 0
        self.held: list[dict] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, 5, (self.source_ip, 0))
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        try:
            self._answers(upstream, client)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        reader = upstream.makefile("rb")
        while True:
            head = _read_head(reader)
            if not head:
                return
            body = reader.read(_content_length(head))
            if self._hold(body):
                continue
            client.sendall(head + body)

    def _hold(self, body: bytes) -> bool:
        try:
            answer = json.loads(body)
        except ValueError:
            return False
        if not isinstance(answer, dict) or answer.get("object") != "payment_intent":
            return False
        with self._lock:
            limit = self.hold_intents_after
            if limit is not None and self.intents_passed >= limit:
                self.held.append(answer)
                return True
            self.intents_passed += 1
            return False


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _read_head(reader) -> bytes:
    lines = []
    while True:
        line = reader.readline()
        if not line:
            return b""
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    if b"transfer-encoding" in head.lower():
        raise AssertionError("the relay reads Content-Length answers only")
    return 0
