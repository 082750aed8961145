"""The API's backlog sample: read at most once per interval, never waited for, kept on failure."""

import logging
import threading

import pytest
from sqlalchemy.exc import OperationalError

from shared.db.faults import Outage
from shared.services import admission
from shared.services.admission import BacklogSample


@pytest.fixture(autouse=True)
def _own_outage(monkeypatch):
    # The process's Postgres outage tracker is not this test's to mark down.
    monkeypatch.setattr(admission, "outage", Outage("postgres", logging.getLogger("test")))


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Count:
    """What the database counts; counts its own reads and can be made to fail."""

    def __init__(self):
        self.backlog = 0
        self.reads = 0
        self.error: Exception | None = None

    def __call__(self) -> int:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.backlog


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def count():
    return Count()


@pytest.fixture
def sample(clock, count):
    return BacklogSample(count, interval_s=0.5, clock=clock)


def test_read_at_first_use_then_at_most_once_per_interval(sample, clock, count):
    assert count.reads == 0  # building the app counts nothing
    count.backlog = 7
    assert sample.value() == 7
    for _ in range(1000):
        sample.value()
    assert count.reads == 1

    count.backlog = 9
    clock.now += 0.49
    assert sample.value() == 7  # not stale yet: the last sample
    clock.now += 0.02
    assert sample.value() == 9 and count.reads == 2


def test_a_failed_count_keeps_the_last_sample_and_is_tried_once_per_interval(sample, clock, count):
    count.backlog = 7
    sample.value()
    count.error = OperationalError("SELECT", {}, Exception("connection refused"))
    clock.now += 5
    assert sample.value() == 7 and sample.value() == 7
    assert count.reads == 2
    count.error = RuntimeError("a bug")
    clock.now += 0.5
    assert sample.value() == 7 and count.reads == 3
    count.error, count.backlog = None, 1
    clock.now += 0.5
    assert sample.value() == 1


def test_while_one_request_counts_the_others_use_the_last_sample(sample, clock, count):
    count.backlog = 7
    sample.value()
    counting, release = threading.Event(), threading.Event()

    def slow_count():
        counting.set()
        release.wait(5)
        return 9

    sample._read = slow_count
    clock.now += 1
    first = threading.Thread(target=sample.value)
    first.start()
    assert counting.wait(5)
    # Another request meanwhile: answered at once, from the last sample.
    assert sample.value() == 7
    release.set()
    first.join(5)
    assert sample.value() == 9
