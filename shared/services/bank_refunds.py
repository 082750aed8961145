"""Refunds of bank payments: the payment's two-phase commit in reverse.

``begin`` (in the refund request's transaction): a ``pending`` refund row and its
``bank_transactions`` row, the merchant's bank debited what it gives back (the
amount less the fee returned to it) and the payer's credited the amount, then the
``refund_bank`` task after commit. ``run`` (that task) votes, decides and sends as the
payment's coordinator does; ``finish`` applies the decision to the refund once, by
compare-and-set on its status: commit → ``succeeded`` with its ledger entries and
``refund.succeeded``; abort → ``failed``, nothing moved. The resolver calls ``finish``
too, so a refund whose task died still ends, presumed aborted if it never decided.
"""

from __future__ import annotations

from sqlalchemy import func, insert, select

from shared.db.tables import bank_transactions as btx
from shared.db.tables import payment_intents as pi
from shared.db.tables import refunds
from shared.db.uow import UnitOfWork, transact
from shared.domain import ledger as L
from shared.domain import twophase as tp
from shared.services import bank_payments, events, ledger, views
from shared.services.batches import NewUnit
from shared.services.ids import new_id

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


def pending(uow: UnitOfWork, intent) -> int:
    """What bank refunds of ``intent`` (locked) still in their two-phase commit return."""
    if intent.pm_type != "bank_account":
        return 0
    return uow.conn.execute(
        select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
            refunds.c.payment_intent_id == intent.id, refunds.c.status == PENDING
        )
    ).scalar_one()


def begin(uow: UnitOfWork, intent, req, amount: int, fee_back: int):
    """The pending refund and its transaction; the refund_bank task runs it after commit."""
    payment = uow.conn.execute(select(btx).where(btx.c.id == f"btx_{intent.id}")).one()
    paid = {p.role: p for p in bank_payments.legs_of(payment)}
    refund_id = new_id("re")
    row = uow.conn.execute(
        insert(refunds)
        .values(
            id=refund_id,
            merchant_id=intent.merchant_id,
            payment_intent_id=intent.id,
            amount=amount,
            currency=intent.currency,
            status=PENDING,
            reason=req.reason,
            fee_refunded=fee_back,
            metadata=req.metadata,
        )
        .returning(refunds)
    ).one()
    # Back to the accounts the payment moved between: the merchant gives back the
    # amount less the fee returned to it, the payer gets the amount.
    legs = tp.legs(
        (paid["payer"].bank, paid["payer"].account),
        (paid["merchant"].bank, paid["merchant"].account),
        amount - fee_back,
        amount,
        refund=True,
    )
    bank_payments.begin(
        uow, f"btx_{refund_id}", intent.id, "refund", intent.currency, legs, refund_id=refund_id
    )
    uow.enqueue("refund_bank", [refund_id])
    return row


def run(new_uow: NewUnit, banks, refund_ids) -> None:
    """The refund_bank task: each refund's two-phase commit, then its outcome."""
    for refund_id in refund_ids:
        row = transact(new_uow, _claim, f"btx_{refund_id}")
        if row is None:
            continue
        bank_payments.run(new_uow, banks, row)
        transact(new_uow, finish, refund_id)


def _claim(uow: UnitOfWork, tx_id: str):
    """The transaction to run, or None; one found claimed and undecided is presumed aborted."""
    row = uow.conn.execute(select(btx).where(btx.c.id == tx_id).with_for_update()).first()
    if row is None or row.decision is not None:
        return row
    if row.attempts:
        # A redelivery: the first run died before deciding. Never a second vote.
        return bank_payments.presume_abort(uow, tx_id)
    return uow.conn.execute(
        btx.update().where(btx.c.id == tx_id).values(attempts=1).returning(btx)
    ).one()


def finish(uow: UnitOfWork, refund_id: str) -> str | None:
    """Apply the decision to a pending refund (once); its new status, or None (nothing to do)."""
    tx = uow.conn.execute(select(btx).where(btx.c.id == f"btx_{refund_id}")).first()
    if tx is None or tx.decision is None:
        return None
    status = SUCCEEDED if tx.decision == tp.COMMIT else FAILED
    row = uow.conn.execute(
        refunds.update()
        .where(refunds.c.id == refund_id, refunds.c.status == PENDING)
        .values(status=status)
        .returning(refunds)
    ).first()
    if row is None:
        return None  # finished already
    if status == SUCCEEDED:
        intent = uow.conn.execute(
            select(pi).where(pi.c.id == row.payment_intent_id).with_for_update()
        ).one()
        _record(uow, intent, row.amount, row.fee_refunded)
        uow.conn.execute(
            pi.update()
            .where(pi.c.id == intent.id)
            .values(amount_refunded=pi.c.amount_refunded + row.amount, updated_at=func.now())
        )
        events.emit(
            uow, [(row.merchant_id, "refund.succeeded", row.id, views.refund_json(row))], None
        )
    return status


def _record(uow: UnitOfWork, intent, amount: int, fee_back: int) -> None:
    """Ledger: the refund and the returned fee as for cards, and what the merchant's bank gave back.

    The merchant's bank paid the amount less the returned fee (the collection, into
    bank clearing), so the merchant's pending balance ends where it was; what bank
    clearing lost is the fee the platform returned.
    """
    cur = intent.currency
    merchant_code = L.account_code("merchant_pending", cur, intent.merchant_id)
    codes = {merchant_code: (cur, False), L.account_code("fees", cur): (cur, False)}
    codes[L.account_code("bank_clearing", cur)] = (cur, False)
    accounts = ledger.account_ids(uow, codes)
    merchant = accounts[merchant_code]
    clearing = accounts[L.account_code("bank_clearing", cur)]
    transfers = [L.Transfer(L.POSTED, merchant, clearing, amount, cur, "refund", intent.id)]
    if fee_back > 0:
        fees = accounts[L.account_code("fees", cur)]
        transfers.append(
            L.Transfer(L.POSTED, fees, merchant, fee_back, cur, "fee_refund", intent.id)
        )
    if amount > fee_back:
        transfers.append(
            L.Transfer(
                L.POSTED, clearing, merchant, amount - fee_back, cur, "bank_collection", intent.id
            )
        )
    ledger.record(uow, transfers)
