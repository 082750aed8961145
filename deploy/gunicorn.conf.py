"""Gunicorn settings for the intake API.

    gunicorn -c deploy/gunicorn.conf.py 'intake.app:get_app()'

Environment: BIND (host:port, wins), else PORT (default 8000) on 127.0.0.1;
WEB_CONCURRENCY (workers, default 4); GUNICORN_TIMEOUT (default 30);
ACCESS_LOG=1 to log every request to stdout; LOG_LEVEL (default info).
"""

from __future__ import annotations

import os

bind = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT') or '8000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or 4)
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = 10
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or 10000)
max_requests_jitter = max_requests // 10
# The app is imported per worker (not preloaded): engines and Redis clients are
# created after fork. post_fork still drops any engine made before it.
preload_app = False

accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in {"1", "true", "yes", "on"} else None
errorlog = "-"
loglevel = (os.environ.get("LOG_LEVEL") or "info").lower()
proc_name = "clearhouse-api"
# gunicorn >= 24 opens a control socket in ~/.gunicorn by default; several API
# servers (tests, e2e) would fight over it. Older versions ignore this name.
control_socket_disable = True


def post_fork(server, worker):
    from shared.db.engine import dispose_engines

    dispose_engines()
