"""The bench's webhook sink (tests/load/webhook_sink.py) keeps connections alive.

Under HTTP/1.0 every webhook send opened a TCP connection (and a sink thread)
of its own; real merchant receivers keep them alive, so the bench must too.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time

from shared.domain.webhooks import sign
from tests.conftest import free_port

SECRET = "whsec_sink_test"


def _start(port: int, out: str) -> subprocess.Popen:
    env = {**os.environ, "BENCH_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.load.webhook_sink", str(port), out],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready = select.select([proc.stdout], [], [], 0.2)[0]
        if ready and "listening" in proc.stdout.readline():
            return proc
        assert proc.poll() is None, "the sink exited before listening"
    proc.kill()
    raise AssertionError("the sink did not start listening")


def _event(event_id: str) -> tuple[bytes, dict]:
    body = json.dumps({"id": event_id}).encode()
    return body, {
        "Content-Type": "application/json",
        "Clearhouse-Signature": sign([SECRET], body, int(time.time())),
    }


def test_sends_on_one_connection_and_all_are_recorded(tmp_path):
    port, out = free_port(), str(tmp_path / "records.json")
    proc = _start(port, out)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        sockets = []
        for i in range(3):
            body, headers = _event(f"evt_{i}")
            conn.request("POST", "/hooks", body=body, headers=headers)
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b'{"received":true}'
            assert resp.version == 11 and not resp.will_close
            sockets.append(conn.sock)
        # A chunked body is read to its end too: the next request still parses.
        body, headers = _event("evt_chunked")
        conn.request("POST", "/hooks", body=iter([body[:5], body[5:]]), headers=headers)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b'{"received":true}'
        sockets.append(conn.sock)
        conn.request("GET", "/stats")
        resp = conn.getresponse()
        stats = json.loads(resp.read())
        assert resp.getheader("Content-Length") and not resp.will_close
        assert stats == {"requests": 4, "events": 4, "bad_signatures": 0}
        sockets.append(conn.sock)
        # http.client reconnects silently after a close: the same socket
        # throughout is what shows the connection was kept.
        assert all(s is sockets[0] for s in sockets)
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    with open(out) as f:
        records = json.load(f)
    assert [r[0] for r in records] == ["evt_0", "evt_1", "evt_2", "evt_chunked"]
    assert all(r[2] for r in records)
