"""Ending an intent: fail or cancel it, releasing its hold and its limits.

Every way an intent stops short of success (limit refusal, fraud block,
decline, processing error, merchant cancel, expired hold) goes through here,
so the hold is always voided and the limit reservation always released in the
same transaction as the status change.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select, text, update

from shared.db.tables import limit_counters
from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.domain.intent import FAILURE_MESSAGES, FailureCode, Status
from shared.domain.limits import counter_keys
from shared.services import events, ledger


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
    uow.conn.execute(
        update(pi)
        .where(pi.c.id.in_([r.id for r in rows]))
        .values(
            status=Status.FAILED,
            failure_code=code.value,
            failure_message=message or FAILURE_MESSAGES[code],
            amount_capturable=0,
            finalized_at=func.now(),
            updated_at=func.now(),
            stage_changed_at=func.now(),
        )
    )
    events.emit_intents(uow, [r.id for r in rows])


def cancel(uow: UnitOfWork, rows, reason: str, hold_kind: str = L.VOID_PENDING) -> None:
    """Cancel rows (locked, cancelable) and undo their reservations."""
    if not rows:
        return
    void_holds(uow, rows, hold_kind)
    release_limits(uow, rows)
    uow.conn.execute(
        update(pi)
        .where(pi.c.id.in_([r.id for r in rows]))
        .values(
            status=Status.CANCELED,
            cancellation_reason=reason,
            amount_capturable=0,
            finalized_at=func.now(),
            updated_at=func.now(),
            stage_changed_at=func.now(),
        )
    )
    events.emit_intents(uow, [r.id for r in rows])


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
