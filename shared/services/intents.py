"""Payment intent use cases: create, read, list, capture, cancel."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, insert, select

from shared.db.tables import payment_intents as pi
from shared.db.tables import wallets
from shared.db.uow import UnitOfWork
from shared.domain.fees import compute_fee
from shared.domain.intent import CANCELABLE, Stage, Status
from shared.domain.validation import CreateIntent, ValidationError, amount_param
from shared.services import events, outcomes, paging, views
from shared.services.errors import InvalidState, NotFound
from shared.services.fee_plans import merchant_fee_plans
from shared.services.ids import new_id

CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")

# Built once, values bound at execute: building ``insert().values(**kw)`` and its
# cache key per create cost more CPU than the compiled-cache hit saved.
_INSERT = insert(pi).returning(pi)
_WALLET = select(wallets).where(wallets.c.id == bindparam("id"))


def create(
    uow: UnitOfWork,
    vault,
    merchant_id: str,
    req: CreateIntent,
    *,
    client_ip: str | None,
    request_id: str | None,
):
    """Insert a new intent at stage ``received``; the outbox relay enqueues it after commit.

    The relay also sends the first deliveries of its ``processing`` event
    (shared/services/outbox.py): no broker round trip per create.
    """
    values = new_intent_row(
        uow, vault, merchant_id, req, client_ip=client_ip, request_id=request_id
    )
    row = uow.conn.execute(_INSERT, values).one()
    events.emit(
        uow,
        [(merchant_id, events.INTENT_EVENTS[row.status], row.id, views.intent_json(row))],
        request_id,
        enqueue=False,
    )
    return row


def new_intent_row(
    uow: UnitOfWork,
    vault,
    merchant_id: str,
    req: CreateIntent,
    *,
    client_ip: str | None,
    request_id: str | None,
) -> dict:
    """The column values of a new intent (its card tokenized); ``create`` inserts them.

    The load bench inserts rows built here many at a time, past the API.
    """
    intent_id = new_id("pi")
    values = dict(
        id=intent_id,
        merchant_id=merchant_id,
        amount=req.amount,
        currency=req.currency,
        status=Status.PROCESSING.value,
        stage=Stage.RECEIVED.value,
        capture_method=req.capture_method,
        priority=req.priority,
        description=req.description,
        metadata=req.metadata,
        customer=req.customer,
        client_ip=client_ip,
        request_id=request_id,
    )
    if req.card is not None:
        fingerprint = vault.fingerprint(req.card.pan)
        values.update(
            pm_type="card",
            # Bound to the intent id (AAD): a token copied to another row won't decrypt.
            card_token=vault.encrypt(req.card.pan, aad=intent_id),
            card_fingerprint=fingerprint,
            card_last4=req.card.last4,
            card_brand=req.card.brand,
            card_exp_month=req.card.exp_month,
            card_exp_year=req.card.exp_year,
            payer_key=f"card:{fingerprint}",
        )
    elif req.bank_account is not None:
        bank, account = req.bank_account.bank, req.bank_account.account
        values.update(
            pm_type="bank_account",
            bank=bank,
            bank_account=account,
            payer_key=f"bank:{bank}:{account}",
        )
    else:
        wallet = uow.conn.execute(_WALLET, {"id": req.wallet_id}).first()
        if wallet is None:
            raise ValidationError(
                "payment_method[wallet_id]", f"No such wallet: {req.wallet_id}", "resource_missing"
            )
        if wallet.currency != req.currency:
            raise ValidationError(
                "currency", f"Wallet {wallet.id} holds {wallet.currency}, not {req.currency}."
            )
        values.update(pm_type="wallet", wallet_id=wallet.id, payer_key=f"wallet:{wallet.id}")
    return values


def get(uow: UnitOfWork, merchant_id: str, intent_id: str, *, lock: bool = False):
    """One intent of this merchant; NotFound (never another merchant's)."""
    query = select(pi).where(pi.c.id == intent_id, pi.c.merchant_id == merchant_id)
    if lock:
        query = query.with_for_update()
    row = uow.conn.execute(query).first()
    if row is None:
        raise NotFound("payment_intent", intent_id)
    return row


def list_(uow: UnitOfWork, merchant_id: str, *, status=None, limit=10, starting_after=None):
    """Newest first; return (rows, has_more)."""
    mine = pi.c.merchant_id == merchant_id
    where = [mine, pi.c.status == status] if status else [mine]
    return paging.newest_first(
        uow,
        pi,
        where,
        kind="payment_intent",
        limit=limit,
        starting_after=starting_after,
        scope=(mine,),
    )


def capture(uow: UnitOfWork, merchant_id: str, intent_id: str, amount: object):
    """Capture all or part of a held amount; the remainder is released."""
    row = get(uow, merchant_id, intent_id, lock=True)
    if row.status != Status.REQUIRES_CAPTURE:
        raise InvalidState(
            f"This PaymentIntent could not be captured because it has a status of {row.status}."
        )
    if row.hold_expires_at is not None and row.hold_expires_at <= _now(uow):
        # The hold-expiry job voids it and cancels the intent (an error here
        # rolls the request's transaction back, so it cannot do that itself).
        raise InvalidState("The authorization on this PaymentIntent has expired.")
    to_capture = (
        row.amount_capturable
        if amount is None
        else amount_param(amount, row.currency, "amount_to_capture")
    )
    if to_capture > row.amount_capturable:
        raise ValidationError(
            "amount_to_capture",
            f"amount_to_capture must be at most the capturable amount {row.amount_capturable}.",
            "amount_too_large",
        )
    plan = merchant_fee_plans(uow, [merchant_id])[merchant_id]
    fee = compute_fee(to_capture, row.currency, row.priority, plan)
    outcomes.capture(uow, [row], {row.id: to_capture}, {row.id: fee})
    if to_capture < row.amount:
        # The released part of the hold no longer counts against limits.
        outcomes.release_limits(uow, [row], {row.id: row.amount - to_capture})
    if row.priority == "instant":
        uow.enqueue("settle_instant", [row.id])
    return get(uow, merchant_id, intent_id)


def cancel(uow: UnitOfWork, merchant_id: str, intent_id: str, reason: object):
    """Cancel a processing or requires_capture intent, releasing what it holds."""
    check_cancellation_reason(reason)
    row = get(uow, merchant_id, intent_id, lock=True)
    if row.status not in CANCELABLE:
        raise InvalidState(
            f"You cannot cancel this PaymentIntent because it has a status of {row.status}."
        )
    outcomes.cancel(uow, [row], reason or "requested_by_customer")
    return get(uow, merchant_id, intent_id)


def check_cancellation_reason(reason: object) -> None:
    """ValidationError unless ``reason`` is absent or a known cancellation reason."""
    if reason is not None and reason not in CANCELLATION_REASONS:
        raise ValidationError(
            "cancellation_reason",
            f"cancellation_reason must be one of: {', '.join(CANCELLATION_REASONS)}.",
        )


def _now(uow: UnitOfWork) -> datetime:
    return uow.conn.execute(select(func.now())).scalar_one()
