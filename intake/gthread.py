"""gunicorn's gthread worker, telling the app how long each request waited for a thread.

A gthread worker's main thread reads the sockets and hands each request to its
thread pool; when every thread is busy (the API's CPU is saturated) requests
wait in the pool's queue, and that wait is most of the accept latency under
overload (issue 12, item 5). This worker stamps each request as it is queued
(``enqueue_req``: a new connection, or a kept-alive one that became readable)
and puts the stamp in the WSGI environ under ``QUEUED_AT`` (``time.monotonic()``),
where ``intake.admission.QueueWait`` refuses a create that waited too long.

``enqueue_req`` and ``handle_request`` are the worker's own steps in every
gunicorn from 19 to 27 (deploy/gunicorn.conf.py selects this class).
"""

from __future__ import annotations

import threading
import time

from gunicorn.workers.gthread import ThreadWorker

QUEUED_AT = "clearhouse.queued_at"

_current = threading.local()


class QueueStampedWorker(ThreadWorker):
    def enqueue_req(self, conn):
        conn.clearhouse_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle_request(self, req, conn):
        # One request per hand-off: the stamp is used once, then dropped.
        _current.queued_at = getattr(conn, "clearhouse_queued_at", None)
        conn.clearhouse_queued_at = None
        try:
            return super().handle_request(req, conn)
        finally:
            _current.queued_at = None

    def load_wsgi(self):
        super().load_wsgi()
        app = self.wsgi

        def stamped(environ, start_response):
            environ[QUEUED_AT] = getattr(_current, "queued_at", None)
            return app(environ, start_response)

        self.wsgi = stamped
