"""The beat job that ends every bank transaction (shared/services/bank_payments.py).

For each transaction some bank has not acknowledged: an undecided one older than
the decision timeout is presumed aborted; a decided one has its decision sent again
to the banks that have not acknowledged it; a refund's outcome is applied once its
decision is known (a payment's is applied by the intent's re-drive).
"""

from __future__ import annotations

from sqlalchemy import select, text

from shared.db.tables import bank_transactions as btx
from shared.db.tables import refunds
from shared.db.uow import UnitOfWork, transact
from shared.domain import twophase as tp
from shared.services import bank_payments, bank_refunds
from shared.services.batches import NewUnit


def resolve(new_uow: NewUnit, banks, decision_timeout_s: float, limit: int = 100) -> dict:
    """The beat job: presume aborts, re-send decisions; counts of what it did."""

    def open_rows(uow: UnitOfWork):
        now = uow.conn.execute(text("SELECT now()")).scalar_one()
        query = select(btx).where(btx.c.completed_at.is_(None)).order_by(btx.c.created_at)
        # Refunds whose task died after the banks acknowledged, before their outcome.
        decided = (
            select(refunds.c.id)
            .join(btx, btx.c.refund_id == refunds.c.id)
            .where(refunds.c.status == bank_refunds.PENDING, btx.c.decision.is_not(None))
            .limit(limit)
        )
        stale = uow.conn.execute(decided).scalars().all()
        return now, uow.conn.execute(query.limit(limit)).all(), stale

    now, rows, stale = transact(new_uow, open_rows)
    done = {"presumed_abort": 0, "sent": 0}
    for row in rows:
        age = (now - row.created_at).total_seconds()
        roles = [p.role for p in bank_payments.legs_of(row)]
        acks = {r: a["state"] for r, a in row.acks.items()}
        step = tp.next_step(roles, row.decision, acks, age, decision_timeout_s)
        if step.step == tp.Step.DECIDE_ABORT:
            row = transact(new_uow, bank_payments.presume_abort, row.id)
            done["presumed_abort"] += 1
        if row.decision is not None:
            bank_payments.send(new_uow, banks, row)
            done["sent"] += 1
        if row.decision is not None and row.refund_id is not None:
            # A refund's outcome follows its decision (a payment's: the intent's re-drive).
            transact(new_uow, bank_refunds.finish, row.refund_id)
    for refund_id in stale:
        transact(new_uow, bank_refunds.finish, refund_id)
    return done
