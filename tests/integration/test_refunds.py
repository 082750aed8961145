"""Refunds on real Postgres, with intents taken through the real worker."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, text

from shared.db.tables import events, refunds
from shared.db.tables import payment_intents as pi
from shared.domain.refunds import CreateRefund, fee_refund, unsettled_net
from shared.domain.validation import ValidationError
from shared.services.errors import InvalidState, NotFound
from tests import factories as f
from tests.support.units import bound

pytestmark = pytest.mark.integration
rng = random.Random()

# Per account code: posted credits less posted debits, summed from the transfers alone.
LEDGER_NET = """
SELECT a.code,
    COALESCE(sum(t.amount) FILTER (WHERE t.credit_account_id = a.id), 0)
  - COALESCE(sum(t.amount) FILTER (WHERE t.debit_account_id = a.id), 0)
FROM ledger_accounts a JOIN ledger_transfers t
  ON a.id IN (t.debit_account_id, t.credit_account_id) AND t.kind IN ('posted', 'post_pending')
WHERE a.code LIKE :prefix GROUP BY a.code
"""


def paid(submit, engine, merchant, amount=1000, priority="standard", body=None) -> object:
    """A succeeded intent (an instant one also settled); returns its row."""
    intent_id = submit(merchant, body or f.card_body(f.random_visa(rng), amount, priority=priority))
    row = f.wait_until_final(engine, [intent_id])[intent_id]
    assert row.status == "succeeded", row.failure_code
    deadline = time.monotonic() + 10
    while priority == "instant" and row.settlement_status != "settled":
        assert time.monotonic() < deadline, "instant intent not settled"
        time.sleep(0.05)  # polling interval
        row = f.wait_until_final(engine, [intent_id])[intent_id]
    return row


def refund(engine, merchant, intent_id, amount=None, **kw):
    from shared.db.uow import UnitOfWork
    from shared.services import refunds as service

    with UnitOfWork(engine) as u:
        row = service.create(u, merchant, CreateRefund(intent_id, amount, None, {}), **kw)
        u.commit()
    return row


def intent(engine, intent_id):
    with engine.connect() as conn:
        return conn.execute(select(pi).where(pi.c.id == intent_id)).one()


def transfers(engine, intent_id, reason):
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT t.amount, d.code AS debit, c.code AS credit FROM ledger_transfers t"
                " JOIN ledger_accounts d ON d.id = t.debit_account_id"
                " JOIN ledger_accounts c ON c.id = t.credit_account_id"
                " WHERE t.intent_id = :i AND t.reason = :r ORDER BY t.id"
            ),
            {"i": intent_id, "r": reason},
        ).all()


def test_full_refund_of_an_unsettled_intent_reverses_payment_and_fee(
    worker, make_merchant, submit, engine, books_balance
):
    merchant = make_merchant()["merchant_id"]
    row = paid(submit, engine, merchant, 1020)
    r = refund(engine, merchant, row.id)
    assert (r.amount, r.status, r.fee_refunded) == (1020, "succeeded", row.fee_amount)
    assert intent(engine, row.id).amount_refunded == 1020
    assert transfers(engine, row.id, "refund") == [
        (1020, f"merchant:{merchant}:pending:USD", "external:card_clearing:USD")
    ]
    assert transfers(engine, row.id, "fee_refund") == [
        (row.fee_amount, "platform:fees:USD", f"merchant:{merchant}:pending:USD")
    ]
    with engine.connect() as conn:
        event = conn.execute(select(events).where(events.c.object_id == r.id)).one()
    assert event.type == "refund.succeeded" and event.merchant_id == merchant
    assert event.data["object"] == "refund" and event.data["amount"] == 1020
    assert event.data["payment_intent"] == row.id and event.data["fee_refunded"] == row.fee_amount
    with pytest.raises(InvalidState) as info:
        refund(engine, merchant, row.id)
    assert info.value.code == "charge_already_refunded"
    books_balance()


def test_several_partial_refunds_up_to_the_captured_amount(
    worker, make_merchant, submit, engine, books_balance
):
    merchant = make_merchant()["merchant_id"]
    row = paid(submit, engine, merchant, 1000)
    done = [refund(engine, merchant, row.id, a) for a in (300, 300)]
    with pytest.raises(ValidationError) as info:
        refund(engine, merchant, row.id, 401)
    assert (info.value.param, info.value.code) == ("amount", "amount_too_large")
    done.append(refund(engine, merchant, row.id))  # the remaining 400
    assert [d.amount for d in done] == [300, 300, 400]
    assert sum(d.fee_refunded for d in done) == row.fee_amount
    assert intent(engine, row.id).amount_refunded == 1000
    books_balance()


def test_ten_concurrent_refunds_never_exceed_what_was_captured(
    worker, make_merchant, submit, engine, books_balance
):
    merchant = make_merchant()["merchant_id"]
    row = paid(submit, engine, merchant, 1000)

    def attempt(_):
        try:
            return refund(engine, merchant, row.id, 300).amount
        except ValidationError:
            return 0

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(attempt, range(10)))
    assert sorted(results, reverse=True)[:4] == [300, 300, 300, 0]
    with engine.connect() as conn:
        total = conn.execute(
            text("SELECT sum(amount) FROM refunds WHERE payment_intent_id = :i"), {"i": row.id}
        ).scalar_one()
    assert total == 900 == intent(engine, row.id).amount_refunded
    books_balance()


def test_refund_of_a_settled_intent_comes_from_available(
    worker, make_merchant, submit, engine, books_balance
):
    merchant = make_merchant()["merchant_id"]
    row = paid(submit, engine, merchant, 2000, priority="instant")
    r = refund(engine, merchant, row.id, 500)
    assert transfers(engine, row.id, "refund") == [
        (500, f"merchant:{merchant}:available:USD", "external:card_clearing:USD")
    ]
    assert transfers(engine, row.id, "fee_refund") == [
        (r.fee_refunded, "platform:fees:USD", f"merchant:{merchant}:available:USD")
    ]
    books_balance()


def test_refund_before_settlement_reduces_what_is_settled(
    worker, make_merchant, submit, engine, books_balance
):
    from shared.db.uow import UnitOfWork
    from shared.services.stages import settlement

    merchant = make_merchant()["merchant_id"]
    row = paid(submit, engine, merchant, 1000, priority="economy")
    r = refund(engine, merchant, row.id, 400)
    with UnitOfWork(engine) as u:
        assert settlement.settle(u, [row.id]) == [row.id]
        u.commit()
    settled = transfers(engine, row.id, "settlement")
    assert settled == [
        (
            unsettled_net(1000, row.fee_amount, 400),
            f"merchant:{merchant}:pending:USD",
            f"merchant:{merchant}:available:USD",
        )
    ]
    assert settled[0].amount == (1000 - row.fee_amount) - (400 - r.fee_refunded)
    books_balance()


def test_wallet_refund_returns_the_money_to_the_wallet(
    worker, make_merchant, funded_wallet, submit, engine, books_balance
):
    from shared.services import merchants

    merchant = make_merchant()["merchant_id"]
    wallet = funded_wallet(5000)
    row = paid(submit, engine, merchant, body=f.wallet_body(wallet, 3000))
    refund(engine, merchant, row.id, 1000)
    with engine.connect() as conn:
        assert merchants.wallet_balance(bound(conn), wallet) == 3000
    refund(engine, merchant, row.id)
    with engine.connect() as conn:
        assert merchants.wallet_balance(bound(conn), wallet) == 5000
    books_balance()


def test_only_succeeded_intents_of_the_merchant_can_be_refunded(
    worker, make_merchant, submit, engine
):
    merchant = make_merchant()["merchant_id"]
    other = make_merchant()["merchant_id"]
    declined = submit(merchant, f.card_body(f.DECLINE, 1000))
    f.wait_until_final(engine, [declined])
    with pytest.raises(InvalidState):
        refund(engine, merchant, declined)
    row = paid(submit, engine, merchant, 1000)
    with pytest.raises(NotFound) as info:
        refund(engine, other, row.id)
    assert info.value.param == "payment_intent"
    with pytest.raises(NotFound):
        refund(engine, merchant, "pi_missing")
    with engine.connect() as conn:
        assert (
            conn.execute(select(refunds).where(refunds.c.payment_intent_id == row.id)).all() == []
        )


def test_balance_equals_the_ledger_after_captures_settlements_and_refunds(
    worker, make_merchant, submit, engine, books_balance
):
    from shared.db.uow import UnitOfWork
    from shared.services.ledger import merchant_balances
    from workers.pipeline import settle_window

    merchant = make_merchant()["merchant_id"]
    instant = [paid(submit, engine, merchant, 1500 + i, priority="instant") for i in range(3)]
    standard = [paid(submit, engine, merchant, 2500 + i, priority="standard") for i in range(3)]
    refund(engine, merchant, instant[0].id, 700)  # from available
    refund(engine, merchant, standard[0].id)  # from pending, in full
    refund(engine, merchant, standard[1].id, 100)
    settle_window([r.id for r in standard])  # as a window batch does, in-process
    refund(engine, merchant, standard[2].id, 50)  # settled by now: from available
    with UnitOfWork(engine) as u:
        balances = merchant_balances(u, merchant)["USD"]
        prefix = {"prefix": f"merchant:{merchant}:%"}
        ledger = dict(u.conn.execute(text(LEDGER_NET), prefix).all())
    assert balances["pending"] == ledger[f"merchant:{merchant}:pending:USD"]
    assert balances["available"] == ledger[f"merchant:{merchant}:available:USD"]
    # And the figures the fee policy predicts: all settled, less what refunds cost.
    assert intent(engine, standard[0].id).settlement_status == "settled"
    expected = sum(r.amount_received - r.fee_amount for r in (*instant, *standard))
    refunded = [(instant[0], 700), (standard[0], 2500), (standard[1], 100), (standard[2], 50)]
    for r, amount in refunded:
        expected -= amount - fee_refund(r.fee_amount, r.amount_received, 0, amount)
    assert (balances["pending"], balances["available"]) == (0, expected)
    books_balance()
