"""The API and the outbox relay ride out a Postgres outage (a private server, safe to stop).

While Postgres is down the API answers 503 problem+json with Retry-After, never
500, and each process logs one line per outage rather than a traceback per
request. Once Postgres is back requests succeed within 2 s and no stale pooled
connection fails one. The relay outlives a restart: its LISTEN reconnects and
intents created afterwards are relayed through the pipeline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from shared.db.roles import APP
from tests import factories as f
from tests.conftest import TEST_ENV, free_port
from tests.support import processes
from tests.support.services import PrivatePostgres

pytestmark = pytest.mark.integration

RECOVERY_S = 2.0
QUEUES = processes.PAYMENT_QUEUES
API_WORKERS = 2
TCP_ESTABLISHED = "01"


@pytest.fixture(scope="module")
def stack(redis_client, vault):
    """A private Postgres (migrated) with the API, the relay and a solo worker on it."""
    from shared.config import Settings
    from shared.db.engine import get_engine
    from shared.db.migrate import upgrade

    pg = PrivatePostgres()
    env = {
        "DATABASE_URL": pg.url(user=APP),  # the services' role; migrations as the superuser
        # Queues of our own: the session's worker (on the session database) must
        # never take these intents off the queues, nor ours take its.
        "REDIS_KEY_PREFIX": TEST_ENV["REDIS_KEY_PREFIX"] + "pg-outage:",
    }
    with contextlib.ExitStack() as stack:
        stack.callback(pg.destroy)
        pg.init()
        pg.start()
        upgrade(pg.url())
        # The private server runs with synchronous_commit=off: a commit would
        # return before its WAL is written and an immediate stop lose it (a
        # stage's update gone, its onward message sent). Durable commits, as
        # in production: what a process saw committed survives the crash.
        admin = create_engine(pg.url(), poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text("ALTER DATABASE clearhouse SET synchronous_commit = on"))
            conn.commit()
        admin.dispose()  # sessions from now on start with it
        engine = get_engine(pg.url(user=APP), "worker", Settings().db_timeouts_worker)
        stack.callback(engine.dispose)  # before the cluster goes
        with engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"
        worker = stack.enter_context(
            processes.celery_worker("pg-outage", QUEUES, pool="solo", concurrency=1, env=env)
        )
        relay = stack.enter_context(processes.relay(env))
        port = free_port()
        api = stack.enter_context(processes.gunicorn(port, workers=API_WORKERS, env=env))
        yield SimpleNamespace(
            pg=pg,
            engine=engine,
            vault=vault,
            api=api,
            relay=relay,
            worker=worker,
            port=port,
            base=f"http://127.0.0.1:{port}",
        )


# --- helpers -------------------------------------------------------------------


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)  # polling interval


def _merchant(stack) -> tuple[dict, dict]:
    """A fresh merchant and its Authorization header (needs Postgres up)."""
    from shared.db.uow import UnitOfWork
    from shared.services import merchants

    with UnitOfWork(stack.engine) as u:
        m = merchants.create_merchant(u, stack.vault, "pg outage merchant", None)
        u.commit()
    return m, {"Authorization": f"Bearer {f.access_token(stack.base, m)}"}


def _body(amount: int = 1000) -> dict:
    return f.card_body(f.random_visa(random.Random()), amount, priority="instant")


def _final(stack, ids: list[str]) -> dict:
    """Wait until the intents are final; on a timeout show what the worker said."""
    try:
        return f.wait_until_final(stack.engine, ids)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{stack.worker.output()[-4000:]}") from None


def _assert_unavailable(status: int, headers, body: bytes) -> None:
    assert status == 503, (status, body[:2000])
    assert headers["Content-Type"].startswith("application/problem+json"), headers
    problem = json.loads(body)
    assert problem["code"] == "service_unavailable" and problem["status"] == 503, problem
    assert int(headers["Retry-After"]) >= 1, headers


class KeepAlive:
    """One HTTP/1.1 connection: every request on it is served by the same gunicorn worker."""

    def __init__(self, port: int, auth: dict):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.auth = auth

    def request(self, method: str, path: str, body=None, headers=None):
        hdrs = {**self.auth, **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=hdrs)
        resp = self.conn.getresponse()
        return resp.status, resp.headers, resp.read()

    @property
    def local_port(self) -> int | None:
        return self.conn.sock.getsockname()[1] if self.conn.sock else None

    def close(self) -> None:
        self.conn.close()


# Which gunicorn worker holds which sockets, read from /proc (Linux): the test
# must know that every worker had pooled connections before the outage, and
# that one worker kept its (stale) ones untouched through it.


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.add(int(entry.name))
    return out


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            target = os.readlink(f"{fd_dir}/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _tcp() -> list[tuple[int, int, str, str]]:
    """(local port, remote port, state, inode) of every IPv4 TCP socket."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        rows.append(
            (int(local.split(":")[1], 16), int(remote.split(":")[1], 16), fields[3], fields[9])
        )
    return rows


def _pg_connections(pid: int, pg_port: int, established: bool = False) -> set[str]:
    """Inodes of ``pid``'s TCP connections to Postgres (ESTABLISHED ones only if asked)."""
    mine = _socket_inodes(pid)
    return {
        inode
        for _, remote, state, inode in _tcp()
        if remote == pg_port and inode in mine and (not established or state == TCP_ESTABLISHED)
    }


def _server_of(client_port: int, api_port: int, workers) -> int:
    """The gunicorn worker that accepted our connection from ``client_port``."""
    inodes = {i for local, remote, _, i in _tcp() if local == api_port and remote == client_port}
    owners = [pid for pid in workers if _socket_inodes(pid) & inodes]
    assert len(owners) == 1, (client_port, owners)
    return owners[0]


def _warm_pools(stack, path: str, auth: dict) -> dict[int, set[str]]:
    """Send requests on fresh connections until every API worker pools Postgres connections."""
    workers = _children(stack.api.proc.pid)
    assert len(workers) == API_WORKERS, workers
    deadline = time.monotonic() + 30
    with ThreadPoolExecutor(8) as pool:
        while True:
            codes = list(
                pool.map(
                    lambda _: requests.get(stack.base + path, headers=auth, timeout=10).status_code,
                    range(16),
                )
            )
            assert set(codes) == {200}, codes
            pooled = {pid: _pg_connections(pid, stack.pg.port, established=True) for pid in workers}
            if all(pooled.values()):
                return pooled
            assert time.monotonic() < deadline, f"some API worker never used Postgres: {pooled}"


def _log_lines(text_: str) -> list[dict]:
    lines = []
    for line in text_.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                lines.append(obj)
    return lines


# --- tests -------------------------------------------------------------------


def test_api_answers_503_while_postgres_is_down_and_recovers(stack):
    merchant, auth = _merchant(stack)
    r = requests.post(stack.base + "/v1/payment_intents", json=_body(), headers=auth, timeout=10)
    assert r.status_code == 202, r.text
    first_id = r.json()["id"]
    path = f"/v1/payment_intents/{first_id}"
    before = _warm_pools(stack, path, auth)
    workers = set(before)

    # The keyed create, tried during the outage and retried after: its amount marks it.
    amount = random.randrange(10_000, 99_999)
    body, key = _body(amount), {"Idempotency-Key": str(uuid.uuid4())}
    log_from = len(stack.api.output())
    keep = KeepAlive(stack.port, auth)
    stack.pg.stop("immediate")
    try:
        ports = set()
        for _ in range(4):
            _assert_unavailable(*keep.request("POST", "/v1/payment_intents", body, key))
            ports.add(keep.local_port)
            _assert_unavailable(*keep.request("GET", path))
            ports.add(keep.local_port)
        # The Token endpoint needs the database too: 503, not 500.
        _assert_unavailable(
            *keep.request(
                "POST",
                "/v1/oauth/token",
                {
                    "grant_type": "client_credentials",
                    "client_id": merchant["client_id"],
                    "client_secret": merchant["client_secret"],
                },
            )
        )
        ports.add(keep.local_port)
        assert len(ports) == 1 and None not in ports, f"the connection was not kept: {ports}"
        served = _server_of(keep.local_port, stack.port, workers)
        (untouched,) = workers - {served}
        # The other worker still holds its pooled connections, now dead: after
        # recovery its first requests check them out.
        assert _pg_connections(untouched, stack.pg.port) & before[untouched], before
    finally:
        started = time.monotonic()
        stack.pg.start()
    up = time.monotonic()

    # Within RECOVERY_S of the restart requests succeed (503 until then, never
    # 500). Asked on the same connection, so of the worker that saw the outage
    # and has no stale connection left: a 503 here only means "not back yet".
    try:
        while True:
            status, headers, raw = keep.request("GET", path)
            if status == 200:
                break
            _assert_unavailable(status, headers, raw)
            assert time.monotonic() - up < RECOVERY_S, "the API did not recover in time"
            time.sleep(0.05)  # polling interval
        recovered_in = time.monotonic() - up
        assert keep.local_port in ports, "the connection was dropped while Postgres restarted"
    finally:
        keep.close()
    assert recovered_in <= RECOVERY_S

    # From then on nothing fails: fresh connections, spread over both workers,
    # until each has served requests on new pooled connections (>= 40 in all).
    answers: list[tuple[int, str]] = []
    deadline = time.monotonic() + 30

    def get(_):
        resp = requests.get(stack.base + path, headers=auth, timeout=10)
        return resp.status_code, resp.text[:300]

    with ThreadPoolExecutor(8) as pool:
        while True:
            answers += pool.map(get, range(8))
            fresh = {
                pid: _pg_connections(pid, stack.pg.port, established=True) - before[pid]
                for pid in workers
            }
            if len(answers) >= 40 and all(fresh.values()):
                break
            assert time.monotonic() < deadline, f"a worker served nothing after recovery: {fresh}"
    failed = [a for a in answers if not 200 <= a[0] < 300]
    assert not failed, f"{len(failed)}/{len(answers)} requests failed after recovery: {failed[:5]}"

    # The create refused during the outage, retried with its key: one intent.
    created = requests.post(
        stack.base + "/v1/payment_intents", json=body, headers={**auth, **key}, timeout=10
    )
    assert created.status_code == 202, created.text
    replay = requests.post(
        stack.base + "/v1/payment_intents", json=body, headers={**auth, **key}, timeout=10
    )
    assert replay.status_code == 202, replay.text
    assert replay.json()["id"] == created.json()["id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"
    with stack.engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM payment_intents WHERE merchant_id = :m AND amount = :a"),
            {"m": merchant["merchant_id"], "a": amount},
        ).scalar()
    assert count == 1
    _final(stack, [first_id, created.json()["id"]])

    # One line per process for the outage (and one when it ends), no traceback.
    log = stack.api.output()[log_from:]
    assert "Traceback" not in log, log[-3000:]
    assert "unhandled error" not in log, log[-3000:]
    lines = _log_lines(log)
    down = Counter(x["process"] for x in lines if "postgres unavailable" in x.get("message", ""))
    back = Counter(
        x["process"] for x in lines if "postgres available again" in x.get("message", "")
    )
    assert down[served] == 1 and max(down.values()) == 1, (down, log[-3000:])
    assert set(down) <= workers, down
    assert back[served] == 1 and max(back.values()) == 1, back
    # No worker died or was replaced on the way.
    assert _children(stack.api.proc.pid) == workers
    print(
        f"postgres restarted in {up - started:.2f}s; the API served {recovered_in:.2f}s later;"
        f" {len(answers)} requests after that, all 2xx"
    )


def test_relay_survives_a_postgres_restart(stack):
    from shared.services import outbox

    _, auth = _merchant(stack)  # the token is fetched while Postgres is up
    relay = stack.relay
    log_from = len(relay.output())

    def relay_log() -> str:
        return relay.output()[log_from:]

    def listening() -> bool:
        with stack.engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE backend_type = 'client backend' AND query = :q"
                    ),
                    {"q": f"LISTEN {outbox.CHANNEL}"},
                ).scalar()
            )

    assert relay.proc.poll() is None, f"the relay exited:\n{relay.output()[-3000:]}"
    _wait(listening, 15, "the relay's LISTEN")
    stack.pg.stop("immediate")
    try:
        _wait(
            lambda: "relay: pass failed" in relay_log() or relay.proc.poll() is not None,
            15,
            "the relay to notice the outage",
        )
    finally:
        stack.pg.start()
    assert relay.proc.poll() is None, f"the relay exited:\n{relay.output()[-3000:]}"
    _wait(lambda: "relay: passes succeed again" in relay_log(), 15, "relay passes to succeed")
    _wait(lambda: relay.proc.poll() is not None or listening(), 15, "the relay to LISTEN again")
    assert relay.proc.poll() is None, f"the relay exited:\n{relay.output()[-3000:]}"
    assert "LISTEN connection lost" in relay_log(), relay_log()

    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = _body()
    r = requests.post(
        stack.base + "/v1/payment_intents", json=body, headers={**auth, **key}, timeout=10
    )
    assert r.status_code == 202, r.text
    row = _final(stack, [r.json()["id"]])[r.json()["id"]]
    assert row.status == "succeeded", (row.status, row.failure_code, row.failure_message)
    assert relay.proc.poll() is None, relay.output()[-3000:]
    assert stack.worker.proc.poll() is None, stack.worker.output()[-3000:]
    assert "Traceback" not in relay_log(), relay_log()[-3000:]
