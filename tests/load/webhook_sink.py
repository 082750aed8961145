"""Webhook receiver for the load benchmark, run as its own process.

``python -m tests.load.webhook_sink PORT OUT_FILE`` with the merchant's
webhook secret in ``BENCH_WEBHOOK_SECRET``. It listens on 127.0.0.1:PORT,
answers every POST at once with 200 ``{"received":true}``, checks the
``Clearhouse-Signature`` with ``shared.domain.webhooks.verify`` and records
one ``[event_id, receipt time (time.time()), signature ok]`` per request.
On SIGTERM (or SIGINT) it writes the records to OUT_FILE as JSON and exits;
``GET /stats`` answers the counts so far.

It answers 200 even to a bad signature (a merchant would answer 400), so a
signing bug shows up in the bench figures without retries changing the load.

It speaks HTTP/1.1 and keeps connections alive, as real merchant receivers
do: the senders' pooled connections (workers/webhook_http.py) are reused
instead of a TCP handshake, and a thread here, per send. So every request's
body is read to its end and every answer has a Content-Length.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.domain.webhooks import verify

ANSWER = b'{"received":true}'


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    # A delivery task POSTs up to 16 events at once, on new connections until
    # its pool has them: the default listen backlog (5) would drop SYNs and
    # add 1 s retransmits.
    request_queue_size = 256


def _read_body(rfile, headers) -> bytes:
    """The whole request body (Content-Length or chunked), so the connection stays usable."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while True:
            size = int(rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(rfile.read(size))
            rfile.readline()  # the CRLF after each chunk
    return rfile.read(int(headers.get("Content-Length") or 0))


def serve(port: int, out: str, secret: str) -> None:
    records: list = []  # [event_id, received_at, ok]; list.append is atomic

    class Handler(BaseHTTPRequestHandler):
        # Keep-alive (the default HTTP/1.0 closes after each answer); an idle
        # connection is closed after a minute, as receivers' servers do.
        protocol_version = "HTTP/1.1"
        timeout = 60
        # TCP_NODELAY, as receivers' servers set it: the headers and the body are
        # two writes, and on a kept-alive connection Nagle's algorithm holds the
        # body until the client's delayed ACK (40 ms a delivery; make bench saw
        # first attempts fall 40 s behind).
        disable_nagle_algorithm = True

        def do_POST(self):  # noqa: N802 - http.server's naming
            body = _read_body(self.rfile, self.headers)
            now = time.time()
            ok = verify(self.headers.get("Clearhouse-Signature", ""), body, secret, now)
            try:
                event_id = json.loads(body).get("id")
            except (ValueError, AttributeError):
                event_id = None
            records.append([event_id, now, ok])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

        def do_GET(self):  # noqa: N802
            _read_body(self.rfile, self.headers)  # none expected; never left on the wire
            snap = list(records)
            doc = json.dumps(
                {
                    "requests": len(snap),
                    "events": len({r[0] for r in snap}),
                    "bad_signatures": sum(1 for r in snap if not r[2]),
                }
            ).encode()
            self.send_response(200 if self.path == "/stats" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(doc)))
            self.end_headers()
            self.wfile.write(doc)

        def log_message(self, *args):  # one line per request would cost CPU
            pass

    server = _Server(("127.0.0.1", port), Handler)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"webhook_sink: listening on 127.0.0.1:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(list(records), f)
    os.replace(tmp, out)
    print(f"webhook_sink: wrote {len(records)} records", flush=True)


def main() -> int:
    port, out = int(sys.argv[1]), sys.argv[2]
    secret = os.environ.get("BENCH_WEBHOOK_SECRET", "")
    if not secret:
        print("webhook_sink: BENCH_WEBHOOK_SECRET is not set", file=sys.stderr)
        return 2
    serve(port, out, secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
