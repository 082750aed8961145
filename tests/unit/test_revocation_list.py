"""The API's revocation list: reread when stale, never per request, kept when the read fails."""

import logging
import threading

import pytest
from sqlalchemy.exc import OperationalError

from shared.db.faults import Outage
from shared.services import revocations
from shared.services.revocations import RevocationList


@pytest.fixture(autouse=True)
def _own_outage(monkeypatch):
    # The process's Postgres outage tracker is not this test's to mark down.
    monkeypatch.setattr(revocations, "outage", Outage("postgres", logging.getLogger("test")))


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Source:
    """What the database says; counts the reads and can be made to fail."""

    def __init__(self):
        self.revoked: set[str] = set()
        self.reads = 0
        self.error: Exception | None = None

    def __call__(self) -> frozenset[str]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return frozenset(self.revoked)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def source():
    return Source()


@pytest.fixture
def revoked(clock, source):
    return RevocationList(source, interval_s=1.0, clock=clock)


@pytest.fixture
def loaded(revoked, source):
    """A list that has read its first one: ``ci_a`` revoked."""
    source.revoked.add("ci_a")
    assert revoked.is_revoked("ci_a")
    return revoked


def test_read_at_first_use_then_at_most_once_per_interval(revoked, clock, source):
    assert source.reads == 0  # building the app reads nothing
    source.revoked.add("ci_a")
    assert revoked.is_revoked("ci_a") and not revoked.is_revoked("ci_b")
    for _ in range(1000):
        revoked.is_revoked("ci_b")
    assert source.reads == 1

    source.revoked.add("ci_b")
    clock.now += 0.99
    assert not revoked.is_revoked("ci_b")  # not stale yet: the last list
    clock.now += 0.02
    assert revoked.is_revoked("ci_b") and source.reads == 2


def test_the_last_good_list_stays_while_the_database_is_away(loaded, clock, source):
    revoked = loaded
    source.error = OperationalError("SELECT", {}, Exception("connection refused"))
    clock.now += 5
    assert revoked.is_revoked("ci_a") and not revoked.is_revoked("ci_b")
    assert source.reads == 2  # one failed read per interval, not one per request
    clock.now += 1
    revoked.is_revoked("ci_a")
    assert source.reads == 3
    source.error = None
    source.revoked.add("ci_b")
    clock.now += 1
    assert revoked.is_revoked("ci_b")


def test_a_bug_in_the_read_keeps_the_last_list_too(loaded, clock, source):
    source.error = RuntimeError("a bug")
    clock.now += 1
    assert loaded.is_revoked("ci_a")


def test_while_one_request_rereads_the_others_use_the_last_list(loaded, clock):
    revoked = loaded
    reading, release = threading.Event(), threading.Event()

    def slow_read():
        reading.set()
        release.wait(5)
        return frozenset({"ci_a", "ci_b"})

    revoked._read = slow_read
    clock.now += 1
    first = threading.Thread(target=revoked.is_revoked, args=("ci_a",))
    first.start()
    assert reading.wait(5)
    # Another request meanwhile: answered at once, from the last list.
    assert revoked.is_revoked("ci_a") and not revoked.is_revoked("ci_b")
    release.set()
    first.join(5)
    assert revoked.is_revoked("ci_b")


def test_a_process_whose_first_read_fails_refuses_nobody_and_reads_again_later(
    revoked, clock, source
):
    source.revoked.add("ci_a")
    source.error = OperationalError("SELECT", {}, Exception("connection refused"))
    assert not revoked.is_revoked("ci_a")  # every operation needs Postgres anyway
    source.error = None
    clock.now += 1
    assert revoked.is_revoked("ci_a")


def test_requests_waiting_for_the_first_list_share_one_read(revoked):
    started, release = threading.Event(), threading.Event()
    reads = []

    def slow_read():
        reads.append(1)
        started.set()
        release.wait(5)
        return frozenset({"ci_a"})

    revoked._read = slow_read
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(revoked.is_revoked("ci_a")))
        for _ in range(4)
    ]
    threads[0].start()
    assert started.wait(5)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(5)
    # Before a first list every request waits for it, and the first read serves them all.
    assert answers == [True] * 4 and len(reads) == 1
