"""Ledger persistence: accounts by code, balance locks, recording transfers."""

from __future__ import annotations

import threading

from sqlalchemy import insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db.tables import ledger_accounts, ledger_transfers
from shared.db.uow import UnitOfWork
from shared.domain.ledger import Balance, Deltas, Transfer
from shared.observability import metrics

# Account ids never change once created, so a process-wide cache saves a
# round trip per batch. Keyed by database URL as tests use several databases.
# Filled only after commit: an id read inside a transaction that then rolls
# back may belong to an account row that was never committed.
_ids: dict[tuple[str, str], int] = {}
_ids_lock = threading.Lock()


def account_ids(uow: UnitOfWork, accounts: dict[str, tuple[str, bool]]) -> dict[str, int]:
    """Ids for account codes ({code: (currency, no_overdraft)}), creating missing ones."""
    db = str(uow.conn.engine.url)
    found = {c: _ids[(db, c)] for c in accounts if (db, c) in _ids}
    missing = sorted(set(accounts) - set(found))
    if not missing:
        return found
    uow.conn.execute(
        pg_insert(ledger_accounts)
        .values(
            [
                {"code": c, "currency": accounts[c][0], "no_overdraft": accounts[c][1]}
                for c in missing
            ]
        )
        .on_conflict_do_nothing(index_elements=["code"])
    )
    new = dict(
        uow.conn.execute(
            select(ledger_accounts.c.code, ledger_accounts.c.id).where(
                ledger_accounts.c.code.in_(missing)
            )
        ).all()
    )
    found.update(new)
    uow.on_commit(lambda: _remember(db, new))
    return found


def _remember(db: str, ids: dict[str, int]) -> None:
    with _ids_lock:
        for code, id_ in ids.items():
            _ids[(db, code)] = id_


def lock_balances(uow: UnitOfWork, ids) -> dict[int, Balance]:
    """Lock accounts in id order (no deadlocks between batches) and read them."""
    rows = uow.conn.execute(
        select(ledger_accounts)
        .where(ledger_accounts.c.id.in_(sorted(set(ids))))
        .order_by(ledger_accounts.c.id)
        .with_for_update()
    )
    return {
        r.id: Balance(
            r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted, r.no_overdraft
        )
        for r in rows
    }


def record(uow: UnitOfWork, transfers: list[Transfer]) -> list[int]:
    """Insert immutable transfer rows and apply their effect on account balances."""
    if not transfers:
        return []
    deltas = Deltas()
    for t in transfers:
        deltas.apply(t)
    lock_balances(uow, deltas.by_account)
    metrics.ledger_recorded(uow, transfers)
    ids = (
        uow.conn.execute(
            insert(ledger_transfers).returning(ledger_transfers.c.id, sort_by_parameter_order=True),
            [
                {
                    "kind": t.kind,
                    "debit_account_id": t.debit,
                    "credit_account_id": t.credit,
                    "amount": t.amount if t.amount > 0 else t.pending_amount,
                    "currency": t.currency,
                    "pending_id": t.pending_id,
                    "timeout_at": t.timeout_at,
                    "intent_id": t.intent_id,
                    "reason": t.reason,
                }
                for t in transfers
            ],
        )
        .scalars()
        .all()
    )
    values = ", ".join(
        f"({int(a)}, {int(d[0])}, {int(d[1])}, {int(d[2])}, {int(d[3])})"
        for a, d in sorted(deltas.by_account.items())
    )
    # Literal integers only (ints from our own arithmetic), so inlining is safe
    # and saves one bind parameter per value.
    uow.conn.execute(
        text(
            "UPDATE ledger_accounts AS a SET"
            " debits_pending = a.debits_pending + v.dp,"
            " debits_posted = a.debits_posted + v.dpo,"
            " credits_pending = a.credits_pending + v.cp,"
            " credits_posted = a.credits_posted + v.cpo"
            f" FROM (VALUES {values}) AS v(id, dp, dpo, cp, cpo) WHERE a.id = v.id"
        )
    )
    return list(ids)


def pending_transfers(uow: UnitOfWork, ids) -> dict[int, object]:
    """Pending (hold) transfers by id, for posting or voiding them."""
    rows = uow.conn.execute(select(ledger_transfers).where(ledger_transfers.c.id.in_(list(ids))))
    return {r.id: r for r in rows}


def merchant_balances(uow: UnitOfWork, merchant_id: str) -> dict:
    """{currency: {"pending", "held", "available"}} from the merchant's ledger accounts.

    pending/available are posted credits less posted debits; ``held`` is
    money authorized but not captured yet (pending credits).
    """
    prefix = f"merchant:{merchant_id}:"
    rows = uow.conn.execute(
        # autoescape: ids contain `_`, a LIKE wildcard.
        select(
            ledger_accounts.c.code,
            ledger_accounts.c.currency,
            ledger_accounts.c.credits_posted,
            ledger_accounts.c.debits_posted,
            ledger_accounts.c.credits_pending,
        ).where(ledger_accounts.c.code.startswith(prefix, autoescape=True))
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
