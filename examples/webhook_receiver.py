"""A merchant's webhook receiver: verify, record once, answer at once, work afterwards.

    CLEARHOUSE_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 9000

Each POST is checked with ``Webhook.construct_event`` against the raw body (a bad or
stale signature: 400, nothing recorded). A good one is inserted into a SQLite inbox
keyed by the event id and answered 200 right away: deliveries are at least once,
so a repeat finds its id there and is answered 200 again without a second entry,
and the API's sender is never kept waiting for the shop's own work. A worker
thread handles the inbox in arrival order and marks each event done; what it does
here is append one JSON line per event to ``--handled`` (fulfil the order, email
the customer, ... in a real shop). The inbox is a file, so an event answered 200
just before a crash is still handled after the restart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from clearhouse_client import SignatureVerificationError, Webhook

MAX_BODY = 1 << 20

INBOX = """
CREATE TABLE IF NOT EXISTS inbox (
    event_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_seq INTEGER NOT NULL,
    handled INTEGER NOT NULL DEFAULT 0
)
"""


class Inbox:
    def __init__(self, path: Path):
        self.path = path
        self.arrived = threading.Condition()
        with self._db() as db:
            db.execute(INBOX)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed (and fsynced) when the block ends."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            with db:
                yield db
        finally:
            db.close()

    def record(self, event_id: str, event_type: str, payload: bytes) -> bool:
        """Store the event once; False if its id was already there (a repeated delivery)."""
        with self._db() as db:
            added = db.execute(
                "INSERT OR IGNORE INTO inbox (event_id, type, payload, received_seq)"
                " VALUES (?, ?, ?, (SELECT coalesce(max(received_seq), 0) + 1 FROM inbox))",
                (event_id, event_type, payload.decode()),
            ).rowcount
        with self.arrived:
            self.arrived.notify()
        return added == 1

    def next_unhandled(self) -> tuple[str, str] | None:
        with self._db() as db:
            return db.execute(
                "SELECT event_id, payload FROM inbox WHERE handled = 0"
                " ORDER BY received_seq LIMIT 1"
            ).fetchone()

    def mark_handled(self, event_id: str) -> None:
        with self._db() as db:
            db.execute("UPDATE inbox SET handled = 1 WHERE event_id = ?", (event_id,))


def work(inbox: Inbox, handled_log: Path) -> None:
    """The shop's own work, off the request path: one line per event, each event once."""
    while True:
        row = inbox.next_unhandled()
        if row is None:
            with inbox.arrived:
                inbox.arrived.wait(1.0)
            continue
        event_id, payload = row
        event = json.loads(payload)
        with handled_log.open("a") as out:
            out.write(json.dumps({"id": event_id, "type": event["type"]}) + "\n")
        inbox.mark_handled(event_id)


def handler(secret: str, inbox: Inbox):
    class Receive(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self._answer(413, {"error": "too large"})
            payload = self.rfile.read(length)
            try:
                event = Webhook.construct_event(
                    payload, self.headers.get("Clearhouse-Signature"), secret
                )
            except SignatureVerificationError as exc:
                return self._answer(400, {"error": str(exc)})
            first = inbox.record(event.id, event.type, payload)
            self._answer(200, {"received": True, "duplicate": not first})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # one line per request is noise here
            pass

    return Receive


def main() -> None:
    parser = argparse.ArgumentParser(description="Receive clearhouse webhooks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--inbox", default="webhook-inbox.sqlite3")
    parser.add_argument("--handled", default="webhook-handled.jsonl")
    args = parser.parse_args()
    secret = os.environ["CLEARHOUSE_WEBHOOK_SECRET"]
    inbox = Inbox(Path(args.inbox))
    threading.Thread(target=work, args=(inbox, Path(args.handled)), daemon=True).start()
    server = ThreadingHTTPServer((args.host, args.port), handler(secret, inbox))
    print(f"listening on http://{args.host}:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
