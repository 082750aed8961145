"""Hash-chain seals on a throwaway database: sealing in order, tamper detection, the CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.domain import hashchain as hc
from shared.services import ledger_verify, seals
from tests.support.sealed import DAY1, DAY2, DAY3, TODAY, at, cli, populate, superuser_sql
from tests.support.sealed import transfer as _transfer
from tests.support.units import bound

pytestmark = pytest.mark.integration


def test_days_are_sealed_in_order_once_and_chain_independently(ledger_db):
    _, engine, _ = ledger_db
    ids = populate(engine)
    with engine.begin() as conn:
        assert seals.seal_day(bound(conn), DAY3) == [DAY1, DAY2, DAY3]
    with engine.begin() as conn:
        assert seals.seal_day(bound(conn), DAY3) == [] and seals.seal_day(bound(conn), DAY1) == []
        with pytest.raises(seals.NotSealable, match="has not ended"):
            seals.seal_day(bound(conn), TODAY)
        rows = conn.execute(text("SELECT * FROM ledger_seals ORDER BY day")).all()
        stored = dict(conn.execute(text("SELECT transfer_id, hash FROM ledger_entry_hashes")).all())
        transfers = {
            r.id: r._mapping for r in conn.execute(text("SELECT * FROM ledger_transfers")).all()
        }
    assert [(r.day, r.entry_count) for r in rows] == [(DAY1, 2), (DAY2, 0), (DAY3, 3)]
    assert rows[0].prev_hash == hc.GENESIS
    assert rows[1].prev_hash == rows[0].seal_hash and rows[2].prev_hash == rows[1].seal_hash
    # Recomputed here from the rows, day by day in id order.
    prev = hc.GENESIS
    by_day = [
        [ids["d1_a"], ids["d1_b"]],
        [],
        sorted([ids[k] for k in ("d3_late", "d3_hold", "d3_post")]),
    ]
    for seal, day_ids in zip(rows, by_day, strict=True):
        hashes = hc.chain(prev, [hc.entry_bytes(dict(transfers[i])) for i in day_ids])
        assert [stored[i] for i in day_ids] == hashes
        last = hashes[-1] if hashes else prev
        first_last = (day_ids[0], day_ids[-1]) if day_ids else (None, None)
        assert seal.seal_hash == hc.seal_hash(prev, seal.day, *first_last, len(day_ids), last)
        prev = seal.seal_hash
    assert ids["today"] not in stored
    with engine.connect() as conn:
        v = ledger_verify.verify(bound(conn))
    assert (v.problems, v.seals, v.entries, v.unsealed) == ([], 3, 5, 1)


def test_verify_names_an_altered_missing_or_extra_transfer_and_cli_exits_1(ledger_db):
    url, engine, admin = ledger_db
    ids = populate(engine)
    with engine.begin() as conn:
        seals.seal_day(bound(conn), DAY3)
    ok = cli(url, "ledger", "verify")
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 3 seals, 5 entries"), ok

    superuser_sql(admin, "UPDATE ledger_transfers SET amount = 201 WHERE id = :i", i=ids["d1_b"])
    bad = cli(url, "ledger", "verify")
    assert bad.returncode == 1, bad
    assert bad.stdout.splitlines() == [f"transfer {ids['d1_b']} altered: hash mismatch"]

    superuser_sql(admin, "UPDATE ledger_transfers SET amount = 200 WHERE id = :i", i=ids["d1_b"])
    assert cli(url, "ledger", "verify").returncode == 0

    superuser_sql(admin, "DELETE FROM ledger_transfers WHERE id = :i", i=ids["d3_late"])
    with engine.begin() as conn:
        late = _transfer(conn, 1, 2, 7, at(DAY1, 18))  # backdated into a sealed day
        problems = ledger_verify.verify(bound(conn)).problems
    assert problems == [
        f"transfer {late} extra: dated {DAY1} but not in its seal",
        f"transfer {ids['d3_late']} missing: sealed on {DAY3}, gone from the ledger",
    ]
    out = cli(url, "ledger", "verify")
    assert out.returncode == 1 and f"transfer {late} extra" in out.stdout


def test_seal_rows_themselves_are_checked(ledger_db):
    _, engine, admin = ledger_db
    populate(engine)
    with engine.begin() as conn:
        seals.seal_day(bound(conn), DAY3)
    with admin.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE ledger_seals SET entry_count = 1 WHERE day = :d"), {"d": DAY1})
        conn.execute(
            text("UPDATE ledger_seals SET seal_hash = :h WHERE day = :d"),
            {"h": "f" * 64, "d": DAY2},
        )
        problems = ledger_verify.verify(bound(conn)).problems
        # Days before `since` are not re-hashed, but their seals still are checked.
        quick = ledger_verify.verify(bound(conn), since=DAY3).problems
    assert problems == [
        f"seal {DAY1}: 2 entries on record, 1 sealed",
        f"seal {DAY2} altered: seal hash mismatch",
        f"seal {DAY3} altered: does not follow the seal before it",
    ]
    assert quick[1:] == problems[1:] and quick[0] == f"seal {DAY1} altered: seal hash mismatch"


def test_trigger_refuses_update_delete_truncate(ledger_db):
    # As a superuser, whom no grant stops: the triggers alone refuse (the app
    # role's grants refuse first, tests/integration/test_db_roles.py).
    _, engine, admin = ledger_db
    ids = populate(engine)
    with engine.begin() as conn:
        seals.seal_day(bound(conn), DAY3)
    for sql in (
        "UPDATE ledger_transfers SET amount = amount + 1 WHERE id = :i",
        "DELETE FROM ledger_transfers WHERE id = :i",
        "TRUNCATE ledger_transfers CASCADE",
        "UPDATE ledger_seals SET seal_hash = repeat('0', 64) WHERE day = :d",
        "DELETE FROM ledger_seals WHERE day = :d",
        "TRUNCATE ledger_seals",
        "UPDATE ledger_entry_hashes SET hash = repeat('0', 64) WHERE transfer_id = :i",
        "DELETE FROM ledger_entry_hashes WHERE transfer_id = :i",
        "TRUNCATE ledger_entry_hashes",
    ):
        with admin.begin() as conn, pytest.raises(DBAPIError, match="immutable"):
            conn.execute(text(sql), {"i": ids["d1_a"], "d": DAY1})
    with engine.connect() as conn:
        counts = [
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("ledger_transfers", "ledger_seals", "ledger_entry_hashes")
        ]
    assert counts == [6, 3, 5]


# Text the COPY that sealing reads escapes or that is not plain ASCII: each must hash
# exactly as the transfer's fields do (hashchain.entry_bytes).
AWKWARD_INTENT_IDS = [
    'pi_"quoted"',
    "pi_back\\slash",
    "pi_tab\there",
    "pi_new\nline",
    "pi_café",
    "\\N",
]


def test_sealing_hashes_awkward_text_as_the_fields_and_locks_no_transfer(ledger_db):
    _, engine, _ = ledger_db
    with engine.begin() as conn:
        a, b = (
            conn.execute(
                text(
                    "INSERT INTO ledger_accounts (code, currency) VALUES"
                    " ('external:card_clearing:USD', 'USD'), ('merchant:m1:pending:USD', 'USD')"
                    " RETURNING id"
                )
            )
            .scalars()
            .all()
        )
        ids = [
            conn.execute(
                text(
                    "INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id,"
                    " amount, currency, timeout_at, intent_id, reason, created_at)"
                    " VALUES ('posted', :d, :c, :a, 'USD', :timeout, :i, 'capture', :t)"
                    " RETURNING id"
                ),
                {"d": a, "c": b, "a": 10 + n, "i": i, "t": at(DAY1, 1, n), "timeout": at(DAY2, 3)},
            ).scalar_one()
            for n, i in enumerate(AWKWARD_INTENT_IDS)
        ]
    with engine.begin() as conn:
        assert seals.seal_day(bound(conn), DAY1) == [DAY1]
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT transfer_id, hash FROM ledger_entry_hashes")).all())
        rows = conn.execute(
            text("SELECT * FROM ledger_transfers WHERE id = ANY(:ids) ORDER BY id"), {"ids": ids}
        ).all()
        # A foreign key's check from the hashes would have locked each transfer (xmax set).
        locked = conn.execute(
            text("SELECT count(*) FROM ledger_transfers WHERE xmax <> 0 AND id = ANY(:ids)"),
            {"ids": ids},
        ).scalar()
    assert [r.intent_id for r in rows] == AWKWARD_INTENT_IDS
    assert [stored[r.id] for r in rows] == hc.chain(
        hc.GENESIS, [hc.entry_bytes(dict(r._mapping)) for r in rows]
    )
    assert locked == 0
    with engine.connect() as conn:
        assert ledger_verify.verify(bound(conn)).problems == []
