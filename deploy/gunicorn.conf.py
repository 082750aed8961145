"""Gunicorn settings for the intake API.

    gunicorn -c deploy/gunicorn.conf.py 'intake.app:get_app()'

Environment: BIND (host:port, wins), else PORT (default 8000) on 127.0.0.1;
WEB_CONCURRENCY (workers, default 3); GUNICORN_TIMEOUT (default 30);
ACCESS_LOG=1 to log every request to stdout; LOG_LEVEL (default info).
The master serves the API's metrics on METRICS_PORT (default 9807, on
METRICS_ADDR, 127.0.0.1 unless told; 0: none), never on the merchant port.
HTTPS with TLS_CERT_FILE and TLS_KEY_FILE; with TLS_CLIENT_CA_FILE as well, a
client certificate that CA signed is required (read through shared.config).
"""

from __future__ import annotations

import os
import ssl

from shared.config import Settings
from shared.observability.logging import gunicorn_logconfig

bind = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT') or '8000'}"
# SO_REUSEPORT: a master restarted after a crash (SIGKILL, OOM) binds at once,
# although its orphaned workers still hold the old socket for the second or
# two until they notice and exit; without it the new master fails to bind and
# the supervisor restarts it again and again.
reuse_port = True
# Three processes of two threads: threads overlap the database round trips and
# keep client connections alive (sync workers cost ~4.5 ms CPU per create,
# gthread ~3.7-4.2 ms); three processes rather than two of four threads halve
# the GIL queueing: make bench p99 accept 40 ms against 50 ms, same CPU.
workers = int(os.environ.get("WEB_CONCURRENCY") or 3)
# gthread, stamping each request as it queues for a thread (MAX_QUEUE_WAIT_MS reads it).
worker_class = os.environ.get("WORKER_CLASS") or "intake.gthread.QueueStampedWorker"
threads = int(os.environ.get("THREADS") or 2)
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
# JSON lines for gunicorn's own log, the app's and (ACCESS_LOG=1) the access log.
logconfig_dict = gunicorn_logconfig(loglevel, access=accesslog is not None)
# No client address and no query string: the address is personal data (an
# intent's client_ip), and queries may carry filters naming a customer or an
# IP; the request id leads to everything else. The logger redacts the one
# path that names a customer (/v1/customers/{customer}/erase).
access_log_format = '"%(m)s %(U)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
proc_name = "clearhouse-api"
# gunicorn >= 24 opens a control socket in ~/.gunicorn by default; several API
# servers (tests, e2e) would fight over it. Older versions ignore this name.
control_socket_disable = True

_tls = Settings.from_env()
if _tls.tls_cert_file:
    certfile, keyfile = _tls.tls_cert_file, _tls.tls_key_file
    # The handshake runs when the connection is accepted, before any HTTP is read:
    # a client the server refuses gets a TLS alert, never an HTTP answer.
    do_handshake_on_connect = True
    if _tls.tls_client_ca_file:
        ca_certs = _tls.tls_client_ca_file  # the only CA trusted for client certificates
        cert_reqs = ssl.CERT_REQUIRED


def ssl_context(conf, default_ssl_context_factory):
    # gunicorn's factory: certfile, keyfile, ca_certs and cert_reqs from above.
    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def on_starting(server):
    # Every worker writes its metrics to files here; /metrics sums them. A
    # folder of its own, emptied, so a restart never adds up old processes.
    import logging

    from shared.config import Settings
    from shared.observability import metrics

    logging.captureWarnings(True)
    metrics.use_multiprocess_dir(os.path.join(Settings.from_env().metrics_dir, "api"))


# The operator port's server, run by the master (when_ready) in a thread.
_metrics_server = None


def when_ready(server):
    # The master, once it listens: /metrics sums every worker's files and adds
    # the gauges read at scrape time (queues, Postgres). Never fatal.
    global _metrics_server
    from intake.metrics import serve_operator_port
    from shared.config import Settings

    _metrics_server = serve_operator_port(Settings.from_env())


def child_exit(server, worker):
    from shared.observability import metrics

    metrics.mark_process_dead(worker.pid)


def post_fork(server, worker):
    from shared.db.engine import dispose_engines

    dispose_engines()
    # The metrics socket is the master's: a worker outliving a killed master
    # must not keep the port from the next one.
    if _metrics_server is not None:
        _metrics_server.socket.close()
