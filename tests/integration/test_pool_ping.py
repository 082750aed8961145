"""Pooled connections are pinged at checkout only after PING_AFTER_IDLE_S idle (db/engine.py).

pool_pre_ping's round trip per checkout was about one statement in eight the
database ran under make bench. A connection used a moment ago is not pinged;
an idle one is, and one that died meanwhile is replaced before anyone uses it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.db import engine as engines

pytestmark = pytest.mark.integration


@pytest.fixture
def pings(engine, monkeypatch):
    """A private engine on the test database, counting the pings it sends."""
    mine = engines._create(engine.url.render_as_string(hide_password=False), (5000, 2000, 10000))
    sent = []
    real = mine.dialect.do_ping

    def counted(dbapi_conn):
        sent.append(dbapi_conn)
        return real(dbapi_conn)

    monkeypatch.setattr(mine.dialect, "do_ping", counted)
    yield mine, sent
    mine.dispose()


def _backend_pid(conn) -> int:
    return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_used_a_moment_ago_is_not_pinged(pings):
    mine, sent = pings
    for _ in range(5):
        with mine.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert sent == []  # made fresh, then reused within PING_AFTER_IDLE_S


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced_before_use(
    pings, engine, monkeypatch
):
    mine, sent = pings
    with mine.connect() as conn:
        dead = _backend_pid(conn)
    # The server ends that session while it waits in the pool (a restart would).
    with engine.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": dead}).scalar()
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_S", 0.0)  # it has been idle "long enough"
    with mine.connect() as conn:
        assert _backend_pid(conn) != dead  # the ping failed; a fresh connection took over
    # Two pings: the dead connection's (failed), then the fresh one's (a threshold
    # of 0 pings every checkout).
    assert len(sent) == 2 and sent[0].closed
