"""The unit of work owns commit and what follows it; the task base runs every task in one."""

from __future__ import annotations

import uuid

import pytest
from psycopg2 import OperationalError as PgOperationalError
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from shared.db.tables import ledger_accounts
from shared.db.uow import UnitOfWork
from shared.services import ledger

pytestmark = pytest.mark.integration


class Published:
    def __init__(self):
        self.sent: list[tuple[str, list[str], float | None]] = []

    def __call__(self, step, ids, countdown=None):
        self.sent.append((step, list(ids), countdown))


def test_enqueued_work_and_hooks_follow_the_commit_and_never_a_rollback(engine):
    published, hooks = Published(), []
    with UnitOfWork(engine, published) as uow:
        uow.enqueue("fraud", ["pi_a", "pi_b"])
        uow.enqueue("authorize", [])  # nothing to send: no message
        uow.on_commit(lambda: hooks.append("committed"))
        uow.conn.execute(text("SELECT 1"))
        assert published.sent == [] and hooks == []  # not before the commit
        uow.commit()
    assert published.sent == [("fraud", ["pi_a", "pi_b"], None)]
    assert hooks == ["committed"]

    with pytest.raises(RuntimeError), UnitOfWork(engine, published) as uow:
        uow.enqueue("fraud", ["pi_c"])
        uow.on_commit(lambda: hooks.append("rolled back"))
        raise RuntimeError("the use case refused")
    assert published.sent == [("fraud", ["pi_a", "pi_b"], None)]
    assert hooks == ["committed"]


def test_a_failed_publish_after_commit_keeps_the_committed_rows(engine):
    name = f"uow-{uuid.uuid4().hex[:8]}"

    def broker_away(step, ids, countdown=None):
        raise ConnectionError("redis is away")

    hooks = []
    with UnitOfWork(engine, broker_away) as uow:
        uow.conn.execute(
            ledger_accounts.insert().values(code=f"test:{name}", currency="USD", no_overdraft=False)
        )
        uow.enqueue("fraud", ["pi_x"])
        uow.on_commit(lambda: hooks.append("ran"))
        uow.commit()  # logs; the re-drive sends the work later
    with engine.connect() as conn:
        found = conn.execute(
            select(ledger_accounts.c.id).where(ledger_accounts.c.code == f"test:{name}")
        ).first()
    assert found is not None and hooks == ["ran"]


def test_the_account_id_cache_fills_only_on_commit(engine):
    code = f"test:cache:{uuid.uuid4().hex[:12]}"
    key = (str(engine.url), code)
    with UnitOfWork(engine) as uow:
        rolled_back = ledger.account_ids(uow, {code: ("USD", False)})[code]
        assert key not in ledger._ids  # not while the transaction is open
    # Rolled back: the id belongs to no row, and the process must not keep it.
    assert key not in ledger._ids
    with UnitOfWork(engine) as uow:
        committed = ledger.account_ids(uow, {code: ("USD", False)})[code]
        uow.commit()
    assert committed != rolled_back
    assert ledger._ids[key] == committed
    with engine.connect() as conn:
        row = conn.execute(select(ledger_accounts.c.id).where(ledger_accounts.c.code == code))
        assert row.scalar_one() == committed


def _transient() -> OperationalError:
    return OperationalError("SELECT 1", {}, PgOperationalError("server closed the connection"))


def test_the_task_base_commits_each_run_and_retries_transient_errors_in_a_fresh_unit(engine):
    from workers.base import task

    code = f"test:task:{uuid.uuid4().hex[:12]}"
    runs: list[int] = []

    @task(f"test.clearhouse.{uuid.uuid4().hex}")
    def flaky(self, uow, code):
        runs.append(self.request.retries)
        uow.conn.execute(
            ledger_accounts.insert().values(
                code=f"{code}:{len(runs)}", currency="USD", no_overdraft=False
            )
        )
        if len(runs) < 3:
            raise _transient()  # after the insert: that attempt's row must roll back
        return len(runs)

    assert flaky.apply(args=[code]).get() == 3
    assert runs == [0, 1, 2]
    with engine.connect() as conn:
        kept = conn.execute(
            select(ledger_accounts.c.code).where(ledger_accounts.c.code.startswith(code))
        ).scalars()
        assert list(kept) == [f"{code}:3"]


def test_the_task_base_fails_on_a_bug_without_retrying_or_publishing(engine, monkeypatch):
    from workers.base import task
    from workers.celery_app import app

    published = Published()
    monkeypatch.setattr(app.runtime, "publish", published)
    runs: list[int] = []

    @task(f"test.clearhouse.{uuid.uuid4().hex}")
    def buggy(self, uow):
        runs.append(1)
        uow.enqueue("fraud", ["pi_never"])
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        buggy.apply().get()
    assert runs == [1] and published.sent == []


def test_a_savepoint_rolled_back_drops_its_writes_and_its_enqueued_work(engine):
    code = f"test:savepoint:{uuid.uuid4().hex[:12]}"
    published = Published()
    with UnitOfWork(engine, published) as uow:
        uow.enqueue("fraud", ["pi_kept"])
        with pytest.raises(ValueError), uow.savepoint():
            uow.conn.execute(
                ledger_accounts.insert().values(code=code, currency="USD", no_overdraft=False)
            )
            uow.enqueue("fraud", ["pi_refused"])
            raise ValueError("refused after a write")
        uow.commit()
    assert published.sent == [("fraud", ["pi_kept"], None)]
    with engine.connect() as conn:
        assert (
            conn.execute(select(ledger_accounts.c.id).where(ledger_accounts.c.code == code)).first()
            is None
        )


def test_transact_keeps_what_a_keep_on_refusal_wrote(engine):
    from shared.db.uow import transact

    code = f"test:keep:{uuid.uuid4().hex[:12]}"

    class Refused(Exception):
        pass

    def write_then_refuse(uow):
        uow.conn.execute(
            ledger_accounts.insert().values(code=code, currency="USD", no_overdraft=False)
        )
        raise Refused

    with pytest.raises(Refused):
        transact(lambda: UnitOfWork(engine), write_then_refuse, keep_on=(Refused,))
    with engine.connect() as conn:
        found = conn.execute(select(ledger_accounts.c.id).where(ledger_accounts.c.code == code))
        assert found.first() is not None
