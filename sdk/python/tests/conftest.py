"""A scriptable local HTTP server for the SDK's own tests (the real API is tested from the
repository's tests/e2e): each test says what the next answers are and reads what was sent."""

from __future__ import annotations

import json
import socket
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clearhouse_client import Client
from clearhouse_client._retry import RetryPolicy

TOKEN_PATH = "/v1/oauth/token"


@dataclass
class Seen:
    method: str
    path: str  # with its query string
    headers: dict[str, str]  # lower-case names
    body: dict | None


@dataclass
class Answer:
    status: int
    body: object = None
    headers: dict | None = None
    hang_up: bool = False  # close the connection without any answer


def problem(status: int, code: str, detail: str = "no", param=None, **headers) -> Answer:
    body = {"type": "about:blank", "title": "t", "status": status, "detail": detail}
    body.update(code=code, param=param, request_id=f"req_{code}")
    return Answer(status, body, {"Content-Type": "application/problem+json", **headers})


def intent(intent_id: str = "pi_1", **fields) -> dict:
    return {"id": intent_id, "object": "payment_intent", "status": "processing", **fields}


class FakeApi:
    """Answers scripted per path (``then``), else a default: a token, or 404."""

    def __init__(self):
        self.seen: list[Seen] = []
        self.scripts: dict[str, deque[Answer]] = defaultdict(deque)
        self.defaults: dict[str, Answer] = {}
        self.tokens_issued = 0
        self.token_ttl = 900
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def then(self, path: str, *answers: Answer) -> None:
        self.scripts[path].extend(answers)

    def requests(self, path: str, method: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.seen
                if s.path.split("?")[0] == path and (method is None or s.method == method)
            ]

    def answer(self, seen: Seen) -> Answer:
        with self._lock:
            self.seen.append(seen)
            route = seen.path.split("?")[0]
            if self.scripts[route]:
                return self.scripts[route].popleft()
            if route in self.defaults:
                return self.defaults[route]
            if route == TOKEN_PATH:
                self.tokens_issued += 1
                n = self.tokens_issued
                token = {"access_token": f"at_{n}", "token_type": "Bearer", "scope": "x"}
                return Answer(
                    200, {**token, "expires_in": self.token_ttl, "refresh_token": f"rt_{n}"}
                )
            return problem(404, "resource_missing")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(api: FakeApi):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real API

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = api.answer(Seen(self.command, self.path, headers, body))
            if answer.hang_up:
                self.close_connection = True
                self.connection.close()
                return
            data = b"" if answer.body is None else json.dumps(answer.body).encode()
            if isinstance(answer.body, str):
                data = answer.body.encode()
            self.send_response(answer.status)
            for name, value in {
                "Content-Type": "application/json",
                **(answer.headers or {}),
            }.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args):  # quiet test output
            pass

    return Handler


@pytest.fixture
def api():
    server = FakeApi()
    yield server
    server.stop()


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sleeps(list):
    """Stands in for time.sleep: records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def make_client(api, sleeps, tmp_path):
    def make(base_url: str | None = None, **kwargs) -> Client:
        kwargs.setdefault("retry", RetryPolicy(max_retries=3))
        kwargs.setdefault("offline_path", tmp_path / "offline.sqlite3")
        kwargs.setdefault("sleep", sleeps)
        return Client("ci_test", "cs_test", base_url or api.url, **kwargs)

    return make
