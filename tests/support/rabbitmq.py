"""A RabbitMQ virtual host per test session: the AMQP twin of REDIS_KEY_PREFIX.

When the tests run with ``BROKER_URL=amqp://…`` (make test's RabbitMQ step),
every pytest process gets a vhost of its own, made with rabbitmqctl and
deleted when the process ends: queues of concurrent sessions on one broker
never mix, and nothing is left behind. Without rabbitmqctl (a remote broker)
the URL's own vhost is used as given.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import warnings
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from shared.config import AMQP_SCHEMES

# make test's RabbitMQ run, and the RabbitMQ-only tests of the Redis run.
LOCAL = "amqp://guest:guest@127.0.0.1:5672//"


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0].lower() in AMQP_SCHEMES


def _ctl(*args: str) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    )


def vhost_url(base_url: str, vhost: str) -> str:
    """``base_url`` on a new vhost ``vhost`` (its user may do anything there), dropped at exit."""
    parts = urlsplit(base_url)
    if shutil.which("rabbitmqctl") is None:
        warnings.warn("rabbitmqctl not found: tests share BROKER_URL's vhost", stacklevel=2)
        return base_url
    user = unquote(parts.username or "guest")
    try:
        _ctl("add_vhost", vhost)
        _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    except (subprocess.SubprocessError, OSError) as exc:
        warnings.warn(f"no vhost of our own ({exc}): tests share BROKER_URL's", stacklevel=2)
        return base_url
    atexit.register(drop_vhost, vhost)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def drop_vhost(vhost: str) -> None:
    # The broker gone already: nothing of ours is left behind.
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        _ctl("delete_vhost", vhost)


def vhost_of(url: str) -> str:
    return unquote(urlsplit(url).path[1:]) or "/"


def close_connections(url: str, reason: str = "test: broker connection lost") -> None:
    """Close every client connection to ``url``'s vhost, as a broker restart does."""
    _ctl("close_all_connections", "--vhost", vhost_of(url), reason)


def backlog(vhost_url_: str, queues) -> tuple[int, int]:
    """(messages ready in ``queues``, messages delivered and not yet acked), from rabbitmqctl.

    A passive declare counts only the ready ones; the unacknowledged count is
    the broker's own (one rabbitmqctl call: about a second, fine for a drain).
    """
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost_of(vhost_url_), "--no-table-headers"]
        + ["name", "messages_ready", "messages_unacknowledged"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    wanted, ready, unacked = set(queues), 0, 0
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] in wanted:
            ready += int(fields[1])
            unacked += int(fields[2])
    return ready, unacked
