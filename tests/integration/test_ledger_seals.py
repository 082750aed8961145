"""Hash-chain seals on a throwaway database: sealing in order, tamper detection, the CLI."""

from __future__ import annotations

import threading

import psycopg2.errors
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.domain import hashchain as hc
from shared.services import ledger_verify, seals
from tests.support.sealed import (
    DAY1,
    DAY2,
    DAY3,
    TODAY,
    accounts,
    at,
    cli,
    populate,
    superuser_sql,
)
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
        a, b = accounts(conn)
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


def _day_of_transfers(engine, n) -> list[int]:
    with engine.begin() as conn:
        a, b = accounts(conn)
        return (
            conn.execute(
                text(
                    "INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id,"
                    " amount, currency, intent_id, reason, created_at)"
                    " SELECT 'posted', :d, :c, g, 'USD', 'pi_' || g, 'capture',"
                    " :t + g * interval '1 second' FROM generate_series(1, :n) g RETURNING id"
                ),
                {"d": a, "c": b, "n": n, "t": at(DAY1, 1)},
            )
            .scalars()
            .all()
        )


def _no_reader_left():
    return not [t for t in threading.enumerate() if t.name.startswith("seal-read-")]


def test_links_stream_to_the_copy_in_small_chunks_with_the_same_hashes(ledger_db, monkeypatch):
    """The day is read on a second connection while this one stores the links:
    chunks of a few lines through a queue two deep must give the same chain."""
    _, engine, _ = ledger_db
    ids = _day_of_transfers(engine, 300)
    monkeypatch.setattr(seals._Pipe, "CHUNK", 100)
    monkeypatch.setattr(seals._Pipe, "DEPTH", 2)
    with engine.begin() as conn:
        assert seals.seal_day(bound(conn), DAY1) == [DAY1]
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT transfer_id, hash FROM ledger_entry_hashes")).all())
        rows = conn.execute(text("SELECT * FROM ledger_transfers ORDER BY id")).all()
        seal = conn.execute(text("SELECT * FROM ledger_seals")).one()
        assert ledger_verify.verify(bound(conn)).problems == []
    hashes = hc.chain(hc.GENESIS, [hc.entry_bytes(dict(r._mapping)) for r in rows])
    assert [stored[i] for i in ids] == hashes
    assert (seal.first_transfer_id, seal.last_transfer_id, seal.entry_count) == (
        ids[0],
        ids[-1],
        300,
    )
    assert _no_reader_left() and engine.pool.checkedout() == 0


class _WriterStops(Exception):
    pass


def _sealing_fails_and_leaves_nothing(engine, error):
    raised = []

    def seal():
        try:
            with engine.begin() as conn:
                seals.seal_day(bound(conn), DAY1)
        except Exception as exc:
            raised.append(exc)

    # A daemon thread: a side left waiting on the other fails the test, never hangs it.
    sealer = threading.Thread(target=seal, daemon=True)
    sealer.start()
    sealer.join(timeout=30)
    assert not sealer.is_alive(), "sealing hung"
    assert len(raised) == 1 and isinstance(raised[0], error), raised
    with engine.connect() as conn:
        left = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM ledger_seals),"
                " (SELECT count(*) FROM ledger_entry_hashes)"
            )
        ).one()
    assert tuple(left) == (0, 0)
    assert _no_reader_left() and engine.pool.checkedout() == 0


def test_a_copy_in_that_stops_midway_ends_the_reader_and_stores_nothing(ledger_db, monkeypatch):
    _, engine, _ = ledger_db
    _day_of_transfers(engine, 300)
    read = seals._Pipe.read
    calls = []

    def read_then_stop(self, size=-1):
        calls.append(1)
        if len(calls) == 3:
            raise _WriterStops()
        return read(self, size)

    monkeypatch.setattr(seals._Pipe, "CHUNK", 100)
    monkeypatch.setattr(seals._Pipe, "DEPTH", 2)
    monkeypatch.setattr(seals._Pipe, "read", read_then_stop)
    # psycopg2 ends the COPY on a failed read() and raises its own error.
    _sealing_fails_and_leaves_nothing(engine, psycopg2.errors.QueryCanceled)
    assert len(calls) == 3
    monkeypatch.undo()
    with engine.begin() as conn:  # nothing half-done is in the way
        assert seals.seal_day(bound(conn), DAY1) == [DAY1]


class _ReaderFails(Exception):
    pass


def test_a_reader_that_fails_midway_fails_the_seal_with_its_error(ledger_db, monkeypatch):
    _, engine, _ = ledger_db
    _day_of_transfers(engine, 300)
    write = seals._Chain.write

    def write_then_fail(self, row):
        if self.count == 150:
            raise _ReaderFails()
        write(self, row)

    monkeypatch.setattr(seals._Pipe, "CHUNK", 100)
    monkeypatch.setattr(seals._Chain, "write", write_then_fail)
    _sealing_fails_and_leaves_nothing(engine, _ReaderFails)
