"""Where a webhook goes: resolved once, vetted, connected to the vetted address.

Deliveries run in this process through the real delivery task (claim, lanes,
sender threads, the recorder) against real receivers on loopback. The name
service is this process's own ``socket.getaddrinfo``, answered by a table
for the test's names (so a name can answer differently from one lookup to
the next, as a rebinding attacker's DNS does), and every TCP connect is
watched: one to a public address is refused on the spot, so no packet leaves
this machine, and the test sees where the send tried to go.
"""

from __future__ import annotations

import dataclasses
import errno
import secrets
import socket
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.domain.webhooks import is_public
from shared.services import events as ev
from shared.services import webhook_endpoints
from shared.services.errors import ServiceError
from tests.conftest import free_port
from tests.support.receiver import Receiver
from tests.support.throwaway_ca import ThrowawayCA
from tests.support.units import bound
from tests.support.waiting import until
from tests.support.webhooks import attempts_of, deliveries_of
from workers.celery_app import app

pytestmark = pytest.mark.integration

PUBLIC = "93.184.216.34"  # globally routable: the policy lets it by


class FakeDNS:
    """``socket.getaddrinfo`` for the test's names; any other name or literal goes to the real one.

    ``answer(name, first, then)``: the first ``len(first)`` lookups of ``name``
    get those answers in turn, every later one gets ``then``.
    """

    def __init__(self, real):
        self._real = real
        self._answers: dict[str, tuple[list, list[str]]] = {}
        self.lookups: list[str] = []

    def answer(self, name: str, first: list[list[str]], then: list[str]) -> None:
        self._answers[name] = (list(first), then)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self._answers:
            return self._real(host, port, family, type, proto, flags)
        self.lookups.append(name)
        first, then = self._answers[name]
        addresses = first.pop(0) if first else then
        port = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
            for a in addresses
        ]


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def connects(monkeypatch):
    """Every (address, port) a TCP socket of this process connects to, from now on."""
    seen: list[tuple[str, int]] = []
    real = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            seen.append((address[0], address[1]))
            if is_public(address[0]):
                raise ConnectionRefusedError(errno.ECONNREFUSED, "no packet leaves this test")
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def worker_settings(monkeypatch):
    """Change the delivering process's settings for this test: ``worker_settings(field=...)``."""

    def change(**fields):
        changed = dataclasses.replace(app.runtime.settings, **fields)
        monkeypatch.setattr(app.runtime, "settings", changed)

    return change


@pytest.fixture
def receiver(make_merchant):
    """A loopback receiver and a merchant whose secret it checks (no URL set yet)."""
    started = []

    def start(tls=None) -> tuple[dict, Receiver]:
        merchant = make_merchant()
        started.append((merchant, Receiver([merchant["webhook_secret"]], free_port(), tls)))
        started[-1][1].start()
        return started[-1]

    yield start
    for _, rx in started:
        rx.stop()


@pytest.fixture(autouse=True)
def no_retries_left(engine, make_merchant):
    """After the test, its deliveries are failed: no later dispatcher sends their retries."""
    yield
    with engine.begin() as conn:
        conn.execute(
            update(wd).where(wd.c.merchant_id.in_(make_merchant.made)).values(status="failed")
        )


def set_url(engine, merchant_id: str, url: str, allow_private: bool) -> None:
    # The merchant's first endpoint exists (make_merchant made it): no secret is sealed.
    with engine.begin() as conn:
        webhook_endpoints.set_url(bound(conn), None, merchant_id, url, allow_private)


def deliver_one(engine, merchant_id: str):
    """Emit one event and send its delivery through the delivery task, here; its attempt."""
    from workers.notifications import deliver_webhooks

    with UnitOfWork(engine) as u:  # no dispatcher: only the call below sends it
        ev.emit(u, [(merchant_id, "settlement.paid", "st_" + secrets.token_hex(4), {})])
        u.commit()
    (delivery,) = [d for d in deliveries_of(engine, merchant_id) if d.attempts == 0]
    # The task as celery-batches calls it: a batch of messages of delivery ids.
    deliver_webhooks([SimpleNamespace(args=[[delivery.id]])])
    (attempt,) = until(lambda: attempts_of(engine, delivery.id), 30, what="the attempt")
    return attempt


def test_a_name_that_rebinds_after_the_send_resolved_it_is_never_reached(
    engine, dns, connects, worker_settings, receiver
):
    merchant, rx = receiver()
    mid = merchant["merchant_id"]
    worker_settings(webhook_allow_private=False, webhook_timeout_s=2.0)
    # Public for the URL's check and for the send's own lookup; loopback after.
    dns.answer("rebind.test", [[PUBLIC], [PUBLIC]], ["127.0.0.1"])
    set_url(engine, mid, f"http://rebind.test:{rx.port}/hooks", allow_private=False)

    attempt = deliver_one(engine, mid)

    # The send resolved the name once and connected to that address: the
    # rebound answer (loopback, where the receiver listens) was never asked for.
    assert rx.hits == {}
    assert [c for c in connects if c[1] == rx.port] == [(PUBLIC, rx.port)]
    assert dns.lookups == ["rebind.test", "rebind.test"]
    assert (attempt.outcome, attempt.status_code, attempt.response_body) == ("failed", None, None)
    assert attempt.error == "NewConnectionError"


def test_a_name_that_rebinds_before_the_send_is_refused_unsent(
    engine, dns, connects, worker_settings, receiver
):
    merchant, rx = receiver()
    mid = merchant["merchant_id"]
    worker_settings(webhook_allow_private=False)
    dns.answer("rebind.test", [[PUBLIC]], ["127.0.0.1"])
    set_url(engine, mid, f"http://rebind.test:{rx.port}/hooks", allow_private=False)

    attempt = deliver_one(engine, mid)

    assert (attempt.outcome, attempt.status_code, attempt.response_body) == ("failed", None, None)
    assert attempt.error == "refused: target address not allowed"
    assert [c for c in connects if c[1] == rx.port] == [] and rx.hits == {}
    (delivery,) = deliveries_of(engine, mid)
    assert delivery.last_error == attempt.error and delivery.last_status_code is None


def test_a_carrier_grade_nat_address_is_refused_when_set_and_when_sent(
    engine, dns, connects, worker_settings, receiver
):
    merchant, rx = receiver()
    mid = merchant["merchant_id"]
    dns.answer("cgnat.test", [], ["100.64.0.1"])  # not private, and not global either
    url = f"http://cgnat.test:{rx.port}/hooks"
    with pytest.raises(ServiceError, match="non-public address"):
        set_url(engine, mid, url, allow_private=False)
    # Stored while private targets were allowed, sent once they are not.
    set_url(engine, mid, url, allow_private=True)
    worker_settings(webhook_allow_private=False)

    attempt = deliver_one(engine, mid)

    assert (attempt.status_code, attempt.response_body) == (None, None)
    assert attempt.error == "refused: target address not allowed"
    assert not [c for c in connects if c[0] == "100.64.0.1"]


def test_with_private_targets_allowed_a_named_loopback_receiver_gets_its_host_header(
    engine, dns, connects, worker_settings, receiver
):
    merchant, rx = receiver()
    mid = merchant["merchant_id"]
    worker_settings(webhook_allow_private=True)
    # Nothing listens on 127.0.0.2: the send goes on to the next address it resolved.
    dns.answer("hooks.test", [], ["127.0.0.2", "127.0.0.1"])
    set_url(engine, mid, f"http://hooks.test:{rx.port}/hooks", allow_private=True)

    attempt = deliver_one(engine, mid)

    assert (attempt.outcome, attempt.status_code) == ("succeeded", 200)
    (got,) = rx.received
    assert got.verified_with == [0] and got.host == f"hooks.test:{rx.port}"
    tried = [c for c in connects if c[1] == rx.port]
    assert tried == [("127.0.0.2", rx.port), ("127.0.0.1", rx.port)]
    assert dns.lookups == ["hooks.test"]  # once, by the send; not again to connect


def test_https_to_a_pinned_address_checks_the_certificate_against_the_host_name(
    engine, dns, connects, worker_settings, receiver, tmp_path
):
    ca = ThrowawayCA(tmp_path)
    # Certificates that name a host only, never 127.0.0.1: a check against
    # the address instead of the name would fail both.
    merchant, good = receiver(tls=ca.server_context("localhost"))
    other, wrong = receiver(tls=ca.server_context("elsewhere.test"))
    worker_settings(webhook_allow_private=True, webhook_ca_file=str(ca.ca_file))
    dns.answer("localhost", [], ["127.0.0.1"])  # pinned to IPv4, where the receivers listen
    set_url(engine, merchant["merchant_id"], f"https://localhost:{good.port}/hooks", True)
    set_url(engine, other["merchant_id"], f"https://localhost:{wrong.port}/hooks", True)

    attempt = deliver_one(engine, merchant["merchant_id"])

    assert (attempt.outcome, attempt.status_code) == ("succeeded", 200)
    (got,) = good.received
    assert got.verified_with == [0] and got.host == f"localhost:{good.port}"
    assert good.server_names == ["localhost"]  # SNI named the host
    assert [c for c in connects if c[1] == good.port] == [("127.0.0.1", good.port)]

    refused = deliver_one(engine, other["merchant_id"])

    # The handshake reached the receiver and its certificate was refused.
    assert wrong.server_names == ["localhost"] and wrong.received == []
    assert (refused.status_code, refused.response_body, refused.error) == (None, None, "SSLError")
