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


def lock_balances(uow: UnitOfWork, ids, guarded_only: bool = False) -> dict[int, Balance]:
    """Lock accounts in id order (no deadlocks between batches) and read them.

    ``guarded_only``: only the accounts that may not be overdrawn (wallets),
    the only ones whose balance decides anything before a transfer.
    """
    query = select(ledger_accounts).where(ledger_accounts.c.id.in_(sorted(set(ids))))
    if guarded_only:
        query = query.where(ledger_accounts.c.no_overdraft)
    # FOR NO KEY UPDATE, as the balance UPDATE itself takes: it does not wait for the
    # KEY SHARE locks other transactions' transfer inserts hold (their foreign keys).
    rows = uow.conn.execute(query.order_by(ledger_accounts.c.id).with_for_update(key_share=True))
    return {
        r.id: Balance(
            r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted, r.no_overdraft
        )
        for r in rows
    }


def record(uow: UnitOfWork, transfers: list[Transfer]) -> list[int]:
    """Insert immutable transfer rows and apply their effect on account balances.

    Accounts that may not be overdrawn are updated now: the database's check
    refuses an overdraft at once, and a later check in this transaction reads
    their balance. Every other account's change waits for the transaction's
    last statements (``uow.write_last``), merged with the other transfers'
    of the transaction: clearing and merchant accounts are in every batch,
    and their row locks then last only for the commit, not for the rest of
    the batch's work (measured in the README).
    """
    if not transfers:
        return []
    deltas = Deltas()
    for t in transfers:
        deltas.apply(t)
    guarded = lock_balances(uow, deltas.by_account, guarded_only=True)
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
    now = {a: d for a, d in deltas.by_account.items() if a in guarded}
    later = {a: d for a, d in deltas.by_account.items() if a not in guarded}
    if now:
        _update_balances(uow, now, lock=False)
    if later:
        uow.write_last("ledger.balances", later, _update_merged)
    return list(ids)


def _update_merged(uow: UnitOfWork, items: list[dict[int, list[int]]]) -> None:
    merged: dict[int, list[int]] = {}
    for by_account in items:
        for account, d in by_account.items():
            m = merged.setdefault(account, [0, 0, 0, 0])
            for i in range(4):
                m[i] += d[i]
    _update_balances(uow, merged, lock=True)


def _update_balances(uow: UnitOfWork, by_account: dict[int, list[int]], lock: bool) -> None:
    ordered = sorted(by_account.items())
    values = ", ".join(
        f"({int(a)}, {int(d[0])}, {int(d[1])}, {int(d[2])}, {int(d[3])})" for a, d in ordered
    )
    # Literal integers only (ints from our own arithmetic), so inlining is safe
    # and saves one bind parameter per value. An UPDATE takes its rows in no set
    # order: ``lock`` first locks them in id order, in the same round trip, so
    # two transactions never deadlock on accounts.
    locking = (
        "SELECT 1 FROM ledger_accounts WHERE id IN"
        f" ({', '.join(str(int(a)) for a, _ in ordered)}) ORDER BY id FOR NO KEY UPDATE; "
        if lock
        else ""
    )
    uow.conn.execute(
        text(
            locking + "UPDATE ledger_accounts AS a SET"
            " debits_pending = a.debits_pending + v.dp,"
            " debits_posted = a.debits_posted + v.dpo,"
            " credits_pending = a.credits_pending + v.cp,"
            " credits_posted = a.credits_posted + v.cpo"
            f" FROM (VALUES {values}) AS v(id, dp, dpo, cp, cpo) WHERE a.id = v.id"
        )
    )


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
