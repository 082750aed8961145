"""Integration fixtures: a real Celery worker process, intents via the services.

The layer's database, Redis db and key prefix are the pytest process's own
(tests/conftest.py TEST_ENV): the in-process code and every process started
here share them, and no other layer's process ever sees them (the e2e stack
has its own, tests/e2e/conftest.py). Tests share the layer's database, so
each one makes its own merchants, payers (cards, wallets) and client IP, and
checks only its own rows (``books_balance``); the whole ledger is audited once,
after the last test of the layer (``ledger_audit``).
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from tests import factories as f
from tests.conftest import free_port
from tests.support import books, processes
from tests.support.receiver import Receiver


@pytest.fixture(scope="session", autouse=True)
def ledger_audit(database):
    """After every test of the layer: the whole ledger reconciles, or the session fails.

    Set up before any other fixture of the layer's first test, so torn down
    after them all (the worker and relay have stopped: nothing is in flight).
    (``database``, not ``engine``: a module may override ``engine`` with its own.)
    """
    from shared.config import Settings
    from shared.db.engine import get_engine

    yield
    problems = books.whole_ledger(get_engine(database, "worker", Settings().db_timeouts_worker))
    if problems:
        listing = "\n  ".join(problems[:50])
        pytest.fail(
            f"ledger audit: {len(problems)} discrepancies in the integration layer's"
            f" database after all its tests:\n  {listing}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def worker(database, redis_client):
    """One real Celery worker (prefork, 2 children) on every queue, and the outbox relay."""
    with processes.celery_worker("integration") as w, processes.relay():
        yield w


@pytest.fixture
def submit(engine, vault):
    """Create intents the way the API does: insert, commit, then enqueue."""
    from shared.db.uow import UnitOfWork
    from shared.domain.validation import validate_create
    from shared.services import intents
    from workers.celery_app import publish as dispatch

    # An address of the test's own: IP velocity counts only this test's intents.
    test_ip = f.new_ip()

    def submit(
        merchant_id: str, body: dict, enqueue: bool = True, client_ip: str | None = None
    ) -> str:
        req = validate_create(body, date.today())
        # enqueue=False: as if published, and every message lost on the way.
        with UnitOfWork(engine, dispatch if enqueue else None) as u:
            row = intents.create(
                u, vault, merchant_id, req, client_ip=client_ip or test_ip, request_id=None
            )
            if not enqueue:
                u.conn.execute(
                    text("UPDATE payment_intents SET enqueued_at = now() WHERE id = :i"),
                    {"i": row.id},
                )
            u.commit()
        return row.id

    return submit


@pytest.fixture
def hooked(make_merchant):
    """A merchant whose (loopback) webhook URL is a running receiver: (merchant, receiver)."""
    port = free_port()
    merchant = make_merchant(webhook_url=f"http://127.0.0.1:{port}/hooks")
    receiver = Receiver([merchant["webhook_secret"]], port).start()
    yield merchant, receiver
    receiver.stop()


@pytest.fixture
def funded_wallet(engine):
    """Factory: a USD payer wallet holding ``amount`` (minor units)."""
    from shared.db.uow import UnitOfWork
    from shared.services import merchants

    def make(amount: int) -> str:
        with UnitOfWork(engine) as u:
            wallet = merchants.create_wallet(u, "payer", "USD")["wallet_id"]
            merchants.fund_wallet(u, wallet, amount)
            u.commit()
        make.made.append(wallet)
        return wallet

    make.made = []
    return make


@pytest.fixture
def books_balance(engine, make_merchant, funded_wallet):
    """Assert the test's own books reconcile: its merchants' accounts and intents, its wallets.

    Other tests' rows are theirs to check (and the layer's ``ledger_audit``'s).
    """

    def check():
        assert make_merchant.made, "books_balance checks the merchants made with make_merchant"
        with engine.connect() as conn:
            problems = books.own_discrepancies(conn, make_merchant.made, funded_wallet.made)
        assert problems == []

    return check


@pytest.fixture
def ledger_db(database):
    """A ledger of the test's own (tests/support/sealed.py), a throwaway database:
    (url, engine as the services connect, the app role) and a superuser's engine."""
    from sqlalchemy import create_engine

    from tests.support.scratchdb import admin_url, scratch_database

    with scratch_database("clearhouse_seals") as (url, engine):
        admin = create_engine(admin_url(url))
        try:
            yield url, engine, admin
        finally:
            admin.dispose()
