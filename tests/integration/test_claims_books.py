"""Each reconciliation check finds the one fault planted for it.

Every case gets a fresh database holding a real day of business (captures,
a decline, a refund, all through the services), which reconciles clean; then
exactly one fault is planted with new rows (the ledger's trigger refuses
UPDATE/DELETE of transfers, so a bad transfer is a new one, with the account
balances kept consistent so only the targeted check can see it) and the daily
run must report exactly that discrepancy.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, text

from shared.db.tables import ledger_accounts
from shared.db.tables import payment_intents as pi
from tests import factories as f
from tests.support.scratchdb import scratch_database
from tests.support.units import bound

pytestmark = pytest.mark.integration


def _create(conn, vault, merchant_id: str, body: dict) -> str:
    from shared.domain.validation import validate_create
    from shared.services import intents

    req = validate_create(body, date.today())
    return intents.create(
        bound(conn), vault, merchant_id, req, client_ip="192.0.2.80", request_id=None
    ).id


def _to_holds(conn, ids) -> None:
    """limits → fraud → fees → holds placed, in one transaction (no worker needed)."""
    from shared.services.stages import authorize, fees, fraud, limits
    from workers.celery_app import app

    limits.run(bound(conn), ids)
    fraud.run(bound(conn), ids, test_cards=app.runtime.test_cards, default_threshold=75)
    fees.run(bound(conn), ids)
    authorize.place_holds(bound(conn), ids, hold_ttl_s=3600)


def _authorize(conn, vault, ids) -> None:
    from shared.services.stages import authorize
    from workers.celery_app import app

    answers = authorize.ask_acquirer(authorize.held(bound(conn), ids), app.runtime.acquirer, vault)
    authorize.apply(bound(conn), answers, max_attempts=3, hold_ttl_s=3600)


def _day_of_business(engine, vault) -> dict:
    """Two captures, a decline and a partial refund, as the pipeline records them."""
    from shared.db.uow import UnitOfWork
    from shared.domain.refunds import CreateRefund
    from shared.services import merchants, refunds

    rng = random.Random()
    with UnitOfWork(engine) as u:
        m = merchants.create_merchant(u, vault, "books", None)["merchant_id"]
        paid = [_create(u.conn, vault, m, f.card_body(f.random_visa(rng), a)) for a in (900, 1500)]
        declined = _create(u.conn, vault, m, f.card_body(f.DECLINE, 700))
        _to_holds(u.conn, [*paid, declined])
        _authorize(u.conn, vault, [*paid, declined])
        refunds.create(u, m, CreateRefund(paid[1], 400, None, {}))
        u.commit()
    with engine.connect() as conn:
        states = dict(conn.execute(select(pi.c.id, pi.c.status).where(pi.c.merchant_id == m)).all())
        codes = dict(conn.execute(select(ledger_accounts.c.code, ledger_accounts.c.id)).all())
    assert states == {paid[0]: "succeeded", paid[1]: "succeeded", declined: "failed"}
    return {"merchant": m, "paid": paid, "declined": declined, "accounts": codes}


def _account(seed: dict, kind: str) -> int:
    m = seed["merchant"]
    code = {
        "pending": f"merchant:{m}:pending:USD",
        "fees": "platform:fees:USD",
        "clearing": "external:card_clearing:USD",
    }[kind]
    return seed["accounts"][code]


def _record(conn, *transfers) -> list[int]:
    """New transfers through the ledger service: the account balances follow them."""
    from shared.services import ledger

    return ledger.record(bound(conn), list(transfers))


def _plant_cross_currency(conn, vault, seed) -> str:
    from shared.domain import ledger as L

    (tid,) = _record(
        conn,
        L.Transfer(L.POSTED, _account(seed, "pending"), _account(seed, "fees"), 50, "EUR", "fee"),
    )
    return f"transfer {tid}: currency differs from its accounts'"


def _plant_over_post(conn, vault, seed) -> str:
    from shared.domain import ledger as L

    debit, credit = _account(seed, "clearing"), _account(seed, "pending")
    (hold,) = _record(conn, L.Transfer(L.PENDING, debit, credit, 500, "USD", "authorization"))
    # The domain refuses to post more than the hold, so this one is written by
    # hand, with the balance change it would have made (posts 600, releases 500).
    tid = conn.execute(
        text(
            "INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id, amount,"
            " currency, pending_id, reason) VALUES ('post_pending', :d, :c, 600, 'USD', :h,"
            " 'capture') RETURNING id"
        ),
        {"d": debit, "c": credit, "h": hold},
    ).scalar_one()
    for account, side in ((debit, "debits"), (credit, "credits")):
        conn.execute(
            text(
                f"UPDATE ledger_accounts SET {side}_pending = {side}_pending - 500,"
                f" {side}_posted = {side}_posted + 600 WHERE id = :a"
            ),
            {"a": account},
        )
    return f"transfer {tid}: posts more than its hold, or resolves a non-hold"


def _plant_refund_mismatch(conn, vault, seed) -> str:
    from shared.domain import ledger as L

    intent = seed["paid"][1]  # refunded 400 through the service
    _record(
        conn,
        L.Transfer(
            L.POSTED,
            _account(seed, "pending"),
            _account(seed, "clearing"),
            100,
            "USD",
            "refund",
            intent,
        ),
    )
    return f"intent {intent}: refunded 400, ledger 500, refunds 400"


def _plant_unreleased_hold(conn, vault, seed) -> str:
    body = f.card_body(f.random_visa(random.Random()), 800)
    intent = _create(conn, vault, seed["merchant"], body)
    _to_holds(conn, [intent])
    # Ended without voiding its hold (what outcomes.fail would have done).
    conn.execute(
        text(
            "UPDATE payment_intents SET status = 'failed', failure_code = 'card_declined',"
            " finalized_at = now() WHERE id = :i AND hold_transfer_id IS NOT NULL"
        ),
        {"i": intent},
    )
    return f"intent {intent}: ended but its hold was never released"


def _plant_missing_fee(conn, vault, seed) -> str:
    from shared.domain import ledger as L
    from shared.services import ledger

    body = f.card_body(f.random_visa(random.Random()), 800)
    intent = _create(conn, vault, seed["merchant"], body)
    _to_holds(conn, [intent])
    row = conn.execute(select(pi).where(pi.c.id == intent)).one()
    assert row.fee_amount > 0
    # Captured without its fee transfer: the hold is posted and the intent
    # says succeeded with its fee, but the platform never got that fee.
    hold = ledger.pending_transfers(bound(conn), [row.hold_transfer_id])[row.hold_transfer_id]
    _record(
        conn,
        L.Transfer(
            L.POST_PENDING,
            hold.debit_account_id,
            hold.credit_account_id,
            800,
            "USD",
            "capture",
            intent,
            pending_id=hold.id,
            pending_amount=hold.amount,
        ),
    )
    conn.execute(
        text(
            "UPDATE payment_intents SET status = 'succeeded', stage = 'authorized',"
            " amount_received = amount, settlement_status = 'pending', finalized_at = now()"
            " WHERE id = :i"
        ),
        {"i": intent},
    )
    return f"intent {intent}: succeeded without its fee transfer"


PLANTS = {
    "cross_currency": _plant_cross_currency,
    "over_post": _plant_over_post,
    "refund_mismatch": _plant_refund_mismatch,
    "unreleased_hold": _plant_unreleased_hold,
    "missing_fee": _plant_missing_fee,
}


@pytest.mark.parametrize("fault", list(PLANTS))
def test_each_reconciliation_check_finds_its_planted_fault(fault, database, vault):
    from shared.db.uow import UnitOfWork
    from shared.services import reports

    today = datetime.now(UTC).date()
    with scratch_database(f"clearhouse_books_{fault}") as (_, engine):
        seed = _day_of_business(engine, vault)
        with UnitOfWork(engine) as u:
            clean = reports.run_daily(u, today)
            u.commit()
        assert clean.discrepancies == [], clean.discrepancies

        with UnitOfWork(engine) as u:
            expected = PLANTS[fault](u.conn, vault, seed)
            u.commit()
        with UnitOfWork(engine) as u:
            found = reports.run_daily(u, today)
            u.commit()
        assert found.discrepancies == [expected]
        assert found.discrepancy_count == 1
