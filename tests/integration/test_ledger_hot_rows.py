"""Hot ledger accounts are written last: their row locks last only for the commit."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.services import ledger

pytestmark = pytest.mark.integration


def _accounts(uow) -> tuple[int, int, int]:
    codes = {
        "external:card_clearing:USD": ("USD", False),
        "merchant:m_hot:pending:USD": ("USD", False),
        "wallet:USD:wal_hot": ("USD", True),
    }
    ids = ledger.account_ids(uow, codes)
    return tuple(ids[c] for c in codes)


def _committed_accounts(engine) -> tuple[int, int, int]:
    with UnitOfWork(engine) as uow:
        ids = _accounts(uow)
        uow.commit()
    return ids


def _posted(debit, credit, amount) -> L.Transfer:
    return L.Transfer(
        kind=L.POSTED, debit=debit, credit=credit, amount=amount, currency="USD", reason="capture"
    )


def _balances(engine, *ids) -> list[tuple]:
    with engine.connect() as c:
        return [
            tuple(r)
            for r in c.execute(
                text(
                    "SELECT debits_posted, credits_posted FROM ledger_accounts"
                    " WHERE id = ANY(:ids) ORDER BY array_position(:ids, id)"
                ),
                {"ids": list(ids)},
            ).all()
        ]


def _locked(engine, account: int) -> bool:
    with engine.connect() as c:
        try:
            c.execute(
                # What a balance update takes (a foreign key check of a transfer takes less).
                text("SELECT 1 FROM ledger_accounts WHERE id = :a FOR NO KEY UPDATE NOWAIT"),
                {"a": account},
            )
        except DBAPIError as exc:
            assert exc.orig.pgcode == "55P03"  # lock_not_available
            return True
        finally:
            c.rollback()
    return False


def test_clearing_and_merchant_balances_are_written_at_commit_merged_and_locked_only_then(
    ledger_db,
):
    _, engine, _ = ledger_db
    clearing, merchant, _ = _committed_accounts(engine)
    with UnitOfWork(engine) as uow:
        ledger.record(uow, [_posted(clearing, merchant, 100)])
        ledger.record(uow, [_posted(clearing, merchant, 25), _posted(clearing, merchant, 5)])
        # The transfers are in; the two accounts are neither locked nor changed yet.
        assert not _locked(engine, clearing) and not _locked(engine, merchant)
        assert (
            uow.conn.execute(
                text("SELECT debits_posted FROM ledger_accounts WHERE id = :a"), {"a": clearing}
            ).scalar()
            == 0
        )
        statements = []
        event.listen(uow.conn, "before_cursor_execute", lambda *a: statements.append(a[2]))
        uow.commit()
    assert _balances(engine, clearing, merchant) == [(130, 0), (0, 130)]
    # One merged write, its accounts locked in id order first, just before COMMIT.
    updates = [s for s in statements if "UPDATE ledger_accounts" in s]
    assert len(updates) == 1 and "ORDER BY id FOR NO KEY UPDATE" in updates[0]


def test_a_rolled_back_savepoint_drops_its_balance_changes_with_its_transfers(ledger_db):
    _, engine, _ = ledger_db
    clearing, merchant, _ = _committed_accounts(engine)
    with UnitOfWork(engine) as uow:
        ledger.record(uow, [_posted(clearing, merchant, 7)])
        with pytest.raises(RuntimeError), uow.savepoint():
            ledger.record(uow, [_posted(clearing, merchant, 1000)])
            raise RuntimeError("refused after writing")
        uow.commit()
    assert _balances(engine, clearing, merchant) == [(7, 0), (0, 7)]
    with engine.connect() as c:
        assert c.execute(text("SELECT sum(amount) FROM ledger_transfers")).scalar() == 7


def test_a_rollback_writes_no_balance_at_all(ledger_db):
    _, engine, _ = ledger_db
    clearing, merchant, _ = _committed_accounts(engine)
    with UnitOfWork(engine) as uow:
        ledger.record(uow, [_posted(clearing, merchant, 9)])
    assert _balances(engine, clearing, merchant) == [(0, 0), (0, 0)]


def test_a_wallet_that_may_not_be_overdrawn_is_written_and_checked_at_once(ledger_db):
    _, engine, _ = ledger_db
    with UnitOfWork(engine) as uow:
        clearing, merchant, wallet = _accounts(uow)
        ledger.record(uow, [_posted(clearing, wallet, 50)])
        # Written now (and locked): a later check in this transaction reads it.
        assert ledger.lock_balances(uow, [wallet])[wallet].spendable() == 50
        assert not _locked(engine, clearing)
        with pytest.raises(DBAPIError, match="ledger_accounts_no_overdraft"), uow.savepoint():
            ledger.record(uow, [_posted(wallet, merchant, 51)])
        uow.commit()
    assert _balances(engine, wallet, clearing, merchant) == [(0, 50), (50, 0), (0, 0)]
