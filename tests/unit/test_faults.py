"""Which errors are transient (retried, 503) and which are bugs or bad data."""

from __future__ import annotations

import logging

import psycopg2
import pytest
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import exc as sa

from shared.db.faults import Outage, is_transient


def _dbapi(cls, invalidated=False):
    orig = psycopg2.OperationalError("boom")
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "error",
    [
        _dbapi(sa.OperationalError),
        _dbapi(sa.InterfaceError),
        _dbapi(sa.DatabaseError, invalidated=True),
        sa.PendingRollbackError("Can't reconnect until invalid transaction is rolled back"),
        sa.TimeoutError("QueuePool limit reached"),
        psycopg2.OperationalError("server closed the connection unexpectedly"),
        BrokerError("Error 111 connecting to 127.0.0.1:6379"),
        RedisConnectionError("Connection closed by server."),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient(error):
    assert is_transient(error)


def test_a_wrapped_transient_error_is_transient():
    try:
        try:
            raise RedisConnectionError("gone")
        except RedisConnectionError as inner:
            raise RuntimeError("could not publish") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_a_bug_raised_while_handling_a_transient_error_is_not_transient():
    try:
        try:
            raise RedisConnectionError("gone")
        except RedisConnectionError:
            raise KeyError("bug in the handler")  # noqa: B904 (the point of the test)
    except KeyError as bug:
        assert not is_transient(bug)


@pytest.mark.parametrize(
    "error",
    [
        _dbapi(sa.IntegrityError),
        _dbapi(sa.ProgrammingError),
        ValueError("bad data"),
        KeyError("bug"),
        None,
    ],
    ids=lambda e: type(e).__name__,
)
def test_not_transient(error):
    assert not is_transient(error)


def test_an_outage_logs_one_line_when_it_starts_and_one_when_it_ends(caplog):
    outage = Outage("postgres", logging.getLogger("test.outage"))
    with caplog.at_level(logging.WARNING, logger="test.outage"):
        for _ in range(50):
            outage.failed(psycopg2.OperationalError("connection refused\nmore detail"))
        outage.recovered()
        outage.recovered()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0] == "postgres unavailable (OperationalError): connection refused"
    assert messages[1].startswith("postgres available again after")
