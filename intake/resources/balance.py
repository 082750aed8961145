"""GET /v1/balance: the merchant's ledger balances per currency."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, select

from shared.db.tables import ledger_accounts as la
from shared.db.uow import UnitOfWork


def merchant_balances(conn: Connection, merchant_id: str) -> dict:
    """{currency: {"pending": .., "held": .., "available": ..}} from the merchant's accounts."""
    prefix = f"merchant:{merchant_id}:"
    rows = conn.execute(
        # autoescape: ids contain `_`, a LIKE wildcard.
        select(
            la.c.code, la.c.currency, la.c.credits_posted, la.c.debits_posted, la.c.credits_pending
        ).where(la.c.code.startswith(prefix, autoescape=True))
    )
    out: dict[str, dict] = {}
    for row in rows:
        kind = row.code[len(prefix) :].split(":", 1)[0]
        if kind not in ("pending", "available"):
            continue
        entry = out.setdefault(row.currency, {"pending": 0, "held": 0, "available": 0})
        entry[kind] = row.credits_posted - row.debits_posted
        if kind == "pending":
            entry["held"] = row.credits_pending
    return out


class Balance:
    auth_required = True

    def __init__(self, engine: Engine):
        self._engine = engine

    def on_get(self, req, resp) -> None:
        with UnitOfWork(self._engine) as uow:
            balances = merchant_balances(uow.conn, req.context.merchant_id)
        currencies = sorted(balances)
        resp.media = {
            "object": "balance",
            "available": [{"currency": c, "amount": balances[c]["available"]} for c in currencies],
            "pending": [
                # credits_pending: not yet posted (e.g. awaiting capture).
                {"currency": c, "amount": balances[c]["pending"], "held": balances[c]["held"]}
                for c in currencies
            ],
            "livemode": False,
        }
