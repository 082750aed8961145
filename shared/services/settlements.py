"""Settlement objects: pay what is left of intents' net into the available balance."""

from __future__ import annotations

from sqlalchemy import bindparam, func, insert

from shared.db.tables import payment_intents as pi
from shared.db.tables import settlements
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.domain.refunds import unsettled_net
from shared.services import events, ledger, views
from shared.services.ids import new_id


def pay_out(uow: UnitOfWork, rows) -> list:
    """Settle locked, unsettled succeeded rows: one settlement per merchant, currency, priority.

    Each intent still gets its own transfer (merchant pending → available,
    reason ``settlement``) so every intent can be traced to its ledger entries.
    """
    if not rows:
        return []
    groups: dict[tuple[str, str, str], list] = {}
    for r in rows:
        groups.setdefault((r.merchant_id, r.currency, r.priority), []).append(r)
    accounts = ledger.account_ids(
        uow,
        {
            L.account_code(kind, currency, merchant): (currency, False)
            for merchant, currency, _ in groups
            for kind in ("merchant_pending", "merchant_available")
        },
    )
    transfers, objects, links = [], [], []
    for (merchant, currency, priority), members in sorted(groups.items()):
        settlement_id = new_id("st")
        # Refunds taken before settlement already left pending: settle the rest.
        amounts = {
            r.id: unsettled_net(r.amount_received, r.fee_amount or 0, r.amount_refunded)
            for r in members
        }
        transfers += [
            L.Transfer(
                kind=L.POSTED,
                debit=accounts[L.account_code("merchant_pending", currency, merchant)],
                credit=accounts[L.account_code("merchant_available", currency, merchant)],
                amount=amounts[r.id],
                currency=currency,
                reason="settlement",
                intent_id=r.id,
            )
            for r in members
            if amounts[r.id] > 0
        ]
        objects.append(
            {
                "id": settlement_id,
                "merchant_id": merchant,
                "currency": currency,
                "priority": priority,
                "amount": sum(amounts.values()),
                "intent_count": len(members),
            }
        )
        links += [{"_id": r.id, "sid": settlement_id} for r in members]
    ledger.record(uow, transfers)
    created = uow.conn.execute(insert(settlements).values(objects).returning(settlements)).all()
    uow.conn.execute(
        pi.update()
        # Compare-and-set: the rows are locked, this is the belt to those braces.
        .where(pi.c.id == bindparam("_id"), pi.c.settlement_status == "pending")
        .values(
            settlement_status="settled",
            settlement_id=bindparam("sid"),
            settled_at=func.now(),
            updated_at=func.now(),
        ),
        links,
    )
    events.emit(
        uow, [(s.merchant_id, "settlement.paid", s.id, views.settlement_json(s)) for s in created]
    )
    return created
