"""Integration fixtures: a real Celery worker process, intents via the services."""

from __future__ import annotations

import random
from datetime import date

import pytest
from sqlalchemy import text

from tests.support import processes


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
    from workers.dispatch import dispatch

    # A documentation-range address per test, so IP velocity stays per test.
    client_ip = f"198.51.100.{random.randrange(1, 255)}"

    def submit(merchant_id: str, body: dict, enqueue: bool = True) -> str:
        req = validate_create(body, date.today())
        with UnitOfWork(engine, dispatch) as u:
            row = intents.create(
                u.conn, vault, merchant_id, req, client_ip=client_ip, request_id=None
            )
            if not enqueue:  # as if published, and every message lost on the way
                u.conn.info.pop("clearhouse.enqueue_after_commit", None)
                u.execute(
                    text("UPDATE payment_intents SET enqueued_at = now() WHERE id = :i"),
                    {"i": row.id},
                )
            u.commit()
        return row.id

    return submit


@pytest.fixture
def funded_wallet(engine):
    """Factory: a USD payer wallet holding ``amount`` (minor units)."""
    from shared.db.uow import UnitOfWork
    from shared.services import merchants

    def make(amount: int) -> str:
        with UnitOfWork(engine) as u:
            wallet = merchants.create_wallet(u.conn, "payer", "USD")["wallet_id"]
            merchants.fund_wallet(u.conn, wallet, amount)
            u.commit()
        return wallet

    return make


@pytest.fixture
def books_balance(engine):
    """Assert the whole ledger reconciles."""
    from shared.services.reconcile import discrepancies

    def check():
        with engine.connect() as conn:
            problems = discrepancies(conn)
        assert problems == []

    return check
