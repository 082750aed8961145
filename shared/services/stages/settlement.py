"""Settlement: move the net amount from the merchant's pending to available."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from shared.db.tables import payment_intents as pi
from shared.domain import ledger as L
from shared.domain.intent import Status
from shared.services import ledger


def settle(conn: Connection, ids, priority: str | None = None) -> list[str]:
    """Settle succeeded, unsettled intents among ``ids``; return those settled."""
    query = (
        select(pi)
        .where(
            pi.c.id.in_(list(ids)),
            pi.c.status == Status.SUCCEEDED,
            pi.c.settlement_status == "pending",
        )
        .order_by(pi.c.id)
        .with_for_update()
    )
    if priority:
        query = query.where(pi.c.priority == priority)
    rows = conn.execute(query).all()
    if not rows:
        return []
    codes = {}
    for r in rows:
        for kind in ("merchant_pending", "merchant_available"):
            codes[L.account_code(kind, r.currency, r.merchant_id)] = (r.currency, False)
    accounts = ledger.account_ids(conn, codes)
    transfers = [
        L.Transfer(
            kind=L.POSTED,
            debit=accounts[L.account_code("merchant_pending", r.currency, r.merchant_id)],
            credit=accounts[L.account_code("merchant_available", r.currency, r.merchant_id)],
            amount=r.amount_received - r.fee_amount,
            currency=r.currency,
            reason="settlement",
            intent_id=r.id,
        )
        for r in rows
        if r.amount_received - r.fee_amount > 0
    ]
    ledger.record(conn, transfers)
    settled = [r.id for r in rows]
    conn.execute(
        pi.update()
        .where(pi.c.id.in_(settled))
        .values(settlement_status="settled", settled_at=func.now(), updated_at=func.now())
    )
    return settled
