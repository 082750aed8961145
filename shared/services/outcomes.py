"""The intent's state changes: capture, hold for capture, fail, cancel.

Every change of an intent's status goes through here, in the transaction of
whoever decides it (a pipeline stage, a merchant's capture or cancel, the
hold-expiry job), together with its ledger entries and its event. Every way an
intent stops short of success (limit refusal, fraud block, decline,
processing error, merchant cancel, expired hold) voids the hold and releases
the limit reservation in that same transaction.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import bindparam, func, select, text, update

from shared.db.tables import limit_counters
from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.domain.intent import FAILURE_MESSAGES, FailureCode, Stage, Status
from shared.domain.limits import counter_keys
from shared.services import events, ledger


def capture(uow: UnitOfWork, rows, amounts: dict[str, int], fees: dict[str, int]) -> None:
    """Succeed rows: post each hold (``amounts`` may be less: the rest is released) and its fee."""
    if not rows:
        return
    holds = ledger.pending_transfers(uow, [r.hold_transfer_id for r in rows])
    fee_accounts = ledger.account_ids(
        uow, {L.account_code("fees", r.currency): (r.currency, False) for r in rows}
    )
    transfers = []
    for r in rows:
        hold = holds[r.hold_transfer_id]
        transfers.append(
            L.Transfer(
                kind=L.POST_PENDING,
                debit=hold.debit_account_id,
                credit=hold.credit_account_id,
                amount=amounts[r.id],
                pending_amount=hold.amount,
                currency=r.currency,
                reason="capture",
                intent_id=r.id,
                pending_id=hold.id,
            )
        )
        if fees[r.id] > 0:
            transfers.append(
                L.Transfer(
                    kind=L.POSTED,
                    debit=hold.credit_account_id,
                    credit=fee_accounts[L.account_code("fees", r.currency)],
                    amount=fees[r.id],
                    currency=r.currency,
                    reason="fee",
                    intent_id=r.id,
                )
            )
    ledger.record(uow, transfers)
    uow.conn.execute(
        pi.update()
        .where(pi.c.id == bindparam("_id"))
        .values(
            status=Status.SUCCEEDED,
            stage=Stage.AUTHORIZED,
            amount_received=bindparam("received"),
            fee_amount=bindparam("fee"),
            amount_capturable=0,
            settlement_status="pending",
            finalized_at=func.now(),
            updated_at=func.now(),
            stage_changed_at=func.now(),
        ),
        [{"_id": r.id, "received": amounts[r.id], "fee": fees[r.id]} for r in rows],
    )
    events.emit_intents(uow, [r.id for r in rows])


def hold_for_capture(uow: UnitOfWork, rows, expires_at: datetime) -> None:
    """Keep approved manual-capture holds until ``expires_at``: status requires_capture."""
    _finish(
        uow,
        rows,
        status=Status.REQUIRES_CAPTURE,
        stage=Stage.AUTHORIZED,
        amount_capturable=pi.c.amount,
        hold_expires_at=expires_at,
    )


def release_limits(uow: UnitOfWork, rows, amounts: dict[str, int] | None = None) -> None:
    """Give back reserved limit amounts (all of it, or ``amounts[intent_id]``)."""
    decrements: dict[str, int] = {}
    released: dict[str, int] = {}
    for r in rows:
        amount = r.limit_reserved if amounts is None else min(amounts[r.id], r.limit_reserved)
        if amount <= 0 or r.limit_day is None:
            continue
        released[r.id] = amount
        for key in counter_keys(r.merchant_id, r.payer_key, r.currency, _day(r.limit_day)):
            decrements[key] = decrements.get(key, 0) + amount
    if not decrements:
        return
    # Lock counters in key order, as the limits stage does, so no deadlock.
    uow.conn.execute(
        select(limit_counters.c.key)
        .where(limit_counters.c.key.in_(sorted(decrements)))
        .order_by(limit_counters.c.key)
        .with_for_update()
    )
    for key in sorted(decrements):
        uow.conn.execute(
            update(limit_counters)
            .where(limit_counters.c.key == key)
            .values(used=limit_counters.c.used - decrements[key])
        )
    for intent_id, amount in released.items():
        uow.conn.execute(
            update(pi)
            .where(pi.c.id == intent_id)
            .values(limit_reserved=pi.c.limit_reserved - amount)
        )


def void_holds(uow: UnitOfWork, rows, kind: str = L.VOID_PENDING) -> None:
    """Void (or expire) the pending ledger transfer of each row that has one."""
    held = [r for r in rows if r.hold_transfer_id is not None]
    if not held:
        return
    pending = ledger.pending_transfers(uow, [r.hold_transfer_id for r in held])
    resolved = set(
        uow.conn.execute(
            text("SELECT pending_id FROM ledger_transfers WHERE pending_id = ANY(:ids)"),
            {"ids": list(pending)},
        ).scalars()
    )
    transfers = [
        L.Transfer(
            kind=kind,
            debit=p.debit_account_id,
            credit=p.credit_account_id,
            amount=p.amount,
            pending_amount=p.amount,
            currency=p.currency,
            reason="authorization",
            intent_id=p.intent_id,
            pending_id=p.id,
        )
        for p in pending.values()
        if p.id not in resolved
    ]
    ledger.record(uow, transfers)


def fail(uow: UnitOfWork, rows, code: FailureCode, message: str | None = None) -> None:
    """Mark rows (locked, status processing) failed and undo their reservations."""
    if not rows:
        return
    void_holds(uow, rows)
    release_limits(uow, rows)
    _finish(
        uow,
        rows,
        status=Status.FAILED,
        failure_code=code.value,
        failure_message=message or FAILURE_MESSAGES[code],
        amount_capturable=0,
    )


def cancel(uow: UnitOfWork, rows, reason: str, hold_kind: str = L.VOID_PENDING) -> None:
    """Cancel rows (locked, cancelable) and undo their reservations."""
    if not rows:
        return
    void_holds(uow, rows, hold_kind)
    release_limits(uow, rows)
    _finish(uow, rows, status=Status.CANCELED, cancellation_reason=reason, amount_capturable=0)


def _finish(uow: UnitOfWork, rows, **values) -> None:
    """Set the rows' new (final or held) status, stamped now, and emit its events."""
    if not rows:
        return
    now = func.now()
    uow.conn.execute(
        update(pi)
        .where(pi.c.id.in_([r.id for r in rows]))
        .values(**values, finalized_at=now, updated_at=now, stage_changed_at=now)
    )
    events.emit_intents(uow, [r.id for r in rows])


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
