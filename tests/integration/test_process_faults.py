"""Processes ride out Postgres and Redis faults: beat, the relay, the unit of work."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import text

from tests.conftest import free_port
from tests.support import processes

pytestmark = pytest.mark.integration

FAST_BEAT = {"BEAT_LOCK_TIMEOUT_S": "3", "REDRIVE_INTERVAL_S": "1", "HOLD_EXPIRY_INTERVAL_S": "1"}


def _sent(beat) -> int:
    return len(re.findall(r"Sending due task", beat.output()))


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling interval


def test_beat_rides_out_a_redis_restart():
    port = free_port()
    redis = processes.redis_server(port)
    beat = processes.celery_beat({**FAST_BEAT, "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    try:
        _wait(lambda: _sent(beat) > 0, 15, "beat to send a task")
        redis.kill()
        redis.stop()
        time.sleep(3)  # an outage of a few loops (a fault duration, not a wait for a result)
        redis = processes.redis_server(port)
        before = _sent(beat)
        _wait(lambda: _sent(beat) > before + 2, 30, "beat to send tasks after the restart")
        assert beat.proc.poll() is None, beat.output()[-3000:]
    finally:
        beat.stop()
        redis.stop()


def test_beat_started_while_redis_is_down_takes_the_lock_once_it_is_back():
    port = free_port()
    env = {**FAST_BEAT, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    beat = processes.celery_beat(env, wait_for_lock=False)
    redis = None
    try:
        _wait(lambda: "unavailable" in beat.output() or beat.proc.poll() is not None, 30, "beat")
        assert _sent(beat) == 0  # never schedules without the lock
        redis = processes.redis_server(port)
        beat.wait_for("beat: Acquired lock", timeout=30)
        _wait(lambda: _sent(beat) > 2, 30, "beat to send tasks")
        assert beat.proc.poll() is None
    finally:
        beat.stop()
        if redis is not None:
            redis.stop()


def test_unit_of_work_after_a_disconnect_at_commit(engine):
    """A connection that dies under commit raises a transient error; the next one works."""
    from shared.db.faults import is_transient
    from shared.db.uow import UnitOfWork

    with pytest.raises(Exception) as info, UnitOfWork(engine) as u:
        pid = u.conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        u.commit()
    assert is_transient(info.value), repr(info.value)
    with UnitOfWork(engine) as u:
        assert u.conn.execute(text("SELECT 2")).scalar() == 2


def test_database_timeouts_are_set_per_kind_of_connection(database):
    from shared.config import Settings
    from shared.db.engine import get_engine

    settings = Settings()  # the defaults: what production runs unless told
    for kind, expected in (("api", "5s"), ("worker", "30s"), ("report", "10min")):
        with get_engine(database, kind, settings.db_timeouts(kind)).connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == expected, kind
            assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() != "0"
            assert conn.execute(text("SHOW lock_timeout")).scalar() != "0"
