"""Refund use cases: create (reversing the payment in the ledger), read, list.

A refund is synchronous: the ledger entries, the refund row, the intent's
``amount_refunded`` and the ``refund.succeeded`` event commit together. The
intent row is locked first, so concurrent refunds of one intent queue up and
never add up to more than was captured. Fee policy: ``shared.domain.refunds``.
"""

from __future__ import annotations

from sqlalchemy import func, insert, select

from shared.db.tables import payment_intents as pi
from shared.db.tables import refunds, wallets
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.domain.intent import Status
from shared.domain.refunds import CreateRefund, fee_refund
from shared.domain.validation import ValidationError
from shared.services import bank_refunds, events, ledger, paging, views
from shared.services.errors import InvalidState, NotFound
from shared.services.ids import new_id


class AlreadyRefunded(InvalidState):
    """Nothing is left to refund."""

    code = "charge_already_refunded"


def create(uow: UnitOfWork, merchant_id: str, req: CreateRefund, request_id=None):
    """Refund all or part of a succeeded intent's unrefunded amount."""
    intent = uow.conn.execute(
        select(pi)
        .where(pi.c.id == req.payment_intent, pi.c.merchant_id == merchant_id)
        .with_for_update()
    ).first()
    if intent is None:
        raise NotFound("payment_intent", req.payment_intent, "payment_intent")
    if intent.status != Status.SUCCEEDED:
        raise InvalidState(
            f"This PaymentIntent cannot be refunded because it has a status of {intent.status}.",
            "payment_intent",
        )
    # Bank refunds still in their two-phase commit count as refunded already.
    remaining = intent.amount_received - intent.amount_refunded - bank_refunds.pending(uow, intent)
    if remaining <= 0:
        raise AlreadyRefunded(f"PaymentIntent {intent.id} has already been refunded.")
    amount = remaining if req.amount is None else req.amount
    if amount > remaining:
        raise ValidationError(
            "amount",
            f"Refund amount ({amount}) is greater than the unrefunded amount ({remaining}).",
            "amount_too_large",
        )
    fee_back = fee_refund(
        intent.fee_amount or 0, intent.amount_received, intent.amount_refunded, amount
    )
    if intent.pm_type == "bank_account":
        return bank_refunds.begin(uow, intent, req, amount, fee_back)
    _reverse(uow, intent, amount, fee_back)
    row = uow.conn.execute(
        insert(refunds)
        .values(
            id=new_id("re"),
            merchant_id=merchant_id,
            payment_intent_id=intent.id,
            amount=amount,
            currency=intent.currency,
            status="succeeded",
            reason=req.reason,
            fee_refunded=fee_back,
            metadata=req.metadata,
        )
        .returning(refunds)
    ).one()
    uow.conn.execute(
        pi.update()
        .where(pi.c.id == intent.id)
        .values(amount_refunded=pi.c.amount_refunded + amount, updated_at=func.now())
    )
    events.emit(
        uow, [(merchant_id, "refund.succeeded", row.id, views.refund_json(row))], request_id
    )
    return row


def _reverse(uow: UnitOfWork, intent, amount: int, fee_back: int) -> None:
    """Ledger: merchant → payer for the amount; the returned fee, platform → merchant."""
    # Settled money sits in available; until then it is still in pending.
    side = "merchant_available" if intent.settlement_status == "settled" else "merchant_pending"
    cur = intent.currency
    merchant_code = L.account_code(side, cur, intent.merchant_id)
    codes = {merchant_code: (cur, False), L.account_code("fees", cur): (cur, False)}
    if intent.pm_type == "card":
        codes[L.account_code("card_clearing", cur)] = (cur, False)
    accounts = ledger.account_ids(uow, codes)
    if intent.pm_type == "card":
        payer = accounts[L.account_code("card_clearing", cur)]
    else:
        # The wallet the payment came from gets its money back.
        payer = uow.conn.execute(
            select(wallets.c.account_id).where(wallets.c.id == intent.wallet_id)
        ).scalar_one()
    merchant = accounts[merchant_code]
    transfers = [L.Transfer(L.POSTED, merchant, payer, amount, cur, "refund", intent.id)]
    if fee_back > 0:
        fees = accounts[L.account_code("fees", cur)]
        transfers.append(
            L.Transfer(L.POSTED, fees, merchant, fee_back, cur, "fee_refund", intent.id)
        )
    ledger.record(uow, transfers)


def get(uow: UnitOfWork, merchant_id: str, refund_id: str, param: str = "id"):
    """One refund of this merchant; NotFound (never another merchant's)."""
    row = uow.conn.execute(
        select(refunds).where(refunds.c.id == refund_id, refunds.c.merchant_id == merchant_id)
    ).first()
    if row is None:
        raise NotFound("refund", refund_id, param)
    return row


def list_(uow: UnitOfWork, merchant_id: str, *, payment_intent=None, limit=10, starting_after=None):
    """Newest first, optionally of one intent; return (rows, has_more)."""
    mine = refunds.c.merchant_id == merchant_id
    where = [mine, refunds.c.payment_intent_id == payment_intent] if payment_intent else [mine]
    return paging.newest_first(
        uow,
        refunds,
        where,
        kind="refund",
        limit=limit,
        starting_after=starting_after,
        scope=(mine,),
    )
