"""Least privilege in Postgres: the services' role cannot change the schema or rewrite the ledger.

A real second role: the statements below run on a connection logged in as
``clearhouse_app`` (not a superuser told to pretend), against the layer's
database as ``db upgrade`` left it. The pipeline test runs the real worker and
relay of the layer, whose sessions are checked to be ``clearhouse_app``'s. The
upgrade tests run ``clearhouse db upgrade`` against a Postgres cluster of their
own, where the roles do not exist until the command creates them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from shared.config import with_user
from shared.db import roles
from tests import factories as f
from tests.conftest import ROOT, python_bin
from tests.support.services import PrivatePostgres

pytestmark = pytest.mark.integration

INSUFFICIENT_PRIVILEGE = "42501"


@pytest.fixture(scope="module")
def app_engine(database):
    """The layer's database, logged in as clearhouse_app whatever DATABASE_URL says."""
    engine = create_engine(with_user(database, roles.APP), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def sealed_rows(app_engine):
    """One connection as the app, in a transaction holding a transfer, its hash and a seal.

    Inserted by the app itself (it may append), never committed: the sealing
    job of other tests never sees a seal for a day that is not over.
    """
    with app_engine.connect() as conn, conn.begin() as tx:
        ids = conn.execute(
            text(
                "INSERT INTO ledger_accounts (code, currency) VALUES (:a, 'USD'), (:b, 'USD')"
                " RETURNING id"
            ),
            {"a": f"roles:{secrets.token_hex(6)}:a", "b": f"roles:{secrets.token_hex(6)}:b"},
        ).scalars()
        debit, credit = ids.all()
        transfer = conn.execute(
            text(
                "INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id,"
                " amount, currency, reason) VALUES ('posted', :d, :c, 5, 'USD', 'capture')"
                " RETURNING id"
            ),
            {"d": debit, "c": credit},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO ledger_entry_hashes (transfer_id, hash) VALUES (:t, repeat('a', 64))"
            ),
            {"t": transfer},
        )
        seal = conn.execute(
            text(
                "INSERT INTO ledger_seals (day, entry_count, prev_hash, seal_hash)"
                " VALUES ('1900-01-01', 1, repeat('0', 64), repeat('b', 64)) RETURNING id"
            )
        ).scalar_one()
        yield conn, {"t": transfer, "s": seal, "a": debit}
        tx.rollback()


REFUSED = {
    "disable the ledger trigger": (
        "ALTER TABLE ledger_transfers DISABLE TRIGGER ledger_transfers_no_update_delete"
    ),
    "disable every ledger trigger": "ALTER TABLE ledger_transfers DISABLE TRIGGER ALL",
    "disable the seals' trigger": "ALTER TABLE ledger_seals DISABLE TRIGGER ALL",
    "skip triggers for the session": "SET session_replication_role = replica",
    "replace the trigger function": (
        "CREATE OR REPLACE FUNCTION ledger_transfers_immutable() RETURNS trigger"
        " AS 'BEGIN RETURN NEW; END' LANGUAGE plpgsql"
    ),
    "drop the trigger": "DROP TRIGGER ledger_transfers_no_update_delete ON ledger_transfers",
    "add a trigger": (
        "CREATE TRIGGER sneaky BEFORE INSERT ON ledger_transfers"
        " FOR EACH ROW EXECUTE FUNCTION ledger_transfers_immutable()"
    ),
    "update a transfer": "UPDATE ledger_transfers SET amount = amount + 1 WHERE id = :t",
    "delete a transfer": "DELETE FROM ledger_transfers WHERE id = :t",
    "update an entry hash": (
        "UPDATE ledger_entry_hashes SET hash = repeat('c', 64) WHERE transfer_id = :t"
    ),
    "delete an entry hash": "DELETE FROM ledger_entry_hashes WHERE transfer_id = :t",
    "update a seal": "UPDATE ledger_seals SET seal_hash = repeat('c', 64) WHERE id = :s",
    "delete a seal": "DELETE FROM ledger_seals WHERE id = :s",
    "allow an account to overdraw": "UPDATE ledger_accounts SET no_overdraft = false WHERE id = :a",
    "rename an account": "UPDATE ledger_accounts SET code = 'x' WHERE id = :a",
    "delete an account": "DELETE FROM ledger_accounts WHERE id = :a",
    "update a settlement": "UPDATE settlements SET amount = 0",
    # Retention may delete events and attempts, erasure rewrite the one column
    # holding personal data; nothing else of them ever changes.
    "rewrite an event's type": "UPDATE events SET type = 'x'",
    "move an event to another merchant": "UPDATE events SET merchant_id = 'x'",
    "rewrite an attempt's outcome": "UPDATE webhook_attempts SET outcome = 'succeeded'",
    "delete an audit row": "DELETE FROM audit_log",
    "delete a settlement": "DELETE FROM settlements",
    "truncate the ledger": "TRUNCATE ledger_transfers CASCADE",
    "truncate the seals": "TRUNCATE ledger_seals",
    "truncate an ordinary table": "TRUNCATE idempotency_keys",
    "drop the ledger": "DROP TABLE ledger_transfers CASCADE",
    "drop an ordinary table": "DROP TABLE idempotency_keys",
    "alter an ordinary table": "ALTER TABLE payment_intents ADD COLUMN sneaky int",
    "take ownership": "ALTER TABLE ledger_transfers OWNER TO clearhouse_app",
    "create a table in public": "CREATE TABLE public.sneaky (id int)",
    "create a table unqualified": "CREATE TABLE sneaky (id int)",
    "create a schema": "CREATE SCHEMA sneaky",
    "rewind a sequence": "SELECT setval('ledger_transfers_id_seq', 1)",
    "rewrite the migration history": "UPDATE alembic_version SET version_num = '0001'",
}


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
def test_the_app_role_is_refused(sealed_rows, sql):
    conn, ids = sealed_rows
    with pytest.raises(DBAPIError) as refused, conn.begin_nested():
        conn.execute(text(sql), ids)
    assert refused.value.orig.pgcode == INSUFFICIENT_PRIVILEGE, refused.value
    # Nothing was changed: the rows are as inserted.
    assert conn.execute(
        text(
            "SELECT t.amount, h.hash, s.seal_hash FROM ledger_transfers t"
            " JOIN ledger_entry_hashes h ON h.transfer_id = t.id, ledger_seals s"
            " WHERE t.id = :t AND s.id = :s"
        ),
        ids,
    ).one() == (5, "a" * 64, "b" * 64)


def test_the_app_role_owns_nothing_and_is_no_superuser(app_engine):
    with app_engine.connect() as conn:
        me = conn.execute(
            text(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
                " WHERE rolname = current_user"
            )
        ).one()
        owned = conn.execute(
            text(
                "SELECT count(*) FROM pg_class WHERE relowner = 'clearhouse_app'::regrole"
                " AND relnamespace = 'public'::regnamespace"
            )
        ).scalar()
        owners = conn.execute(
            text(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
                " WHERE relnamespace = 'public'::regnamespace"
            )
        ).scalars()
        # What no statement of a test above can show: REFERENCES (a table of its own
        # would need CREATE) and TRIGGER, on no table; no TRUNCATE anywhere.
        beyond_rows = conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind = 'r'"
                " AND has_table_privilege(oid, 'TRUNCATE, REFERENCES, TRIGGER')"
            )
        ).scalars()
        assert tuple(me) == (False, False, False, False)
        assert owned == 0 and set(owners) == {roles.OWNER}
        assert list(beyond_rows) == []


def test_a_pipeline_run_works_as_the_app_role(
    worker, engine, admin_engine, make_merchant, submit, books_balance
):
    """create -> authorize -> capture -> settle -> report, and every beat job, as the app."""
    from shared.db.uow import UnitOfWork
    from shared.services import intents, ledger_verify, maintenance, retention
    from workers.celery_app import publish

    merchant = make_merchant()["merchant_id"]
    held = submit(merchant, f.card_body(amount=1500, capture_method="manual", priority="instant"))
    standard = submit(merchant, f.card_body(amount=900, priority="standard"))
    rows = f.wait_until_final(engine, [held, standard])
    assert (rows[held].status, rows[standard].status) == ("requires_capture", "succeeded")

    with UnitOfWork(engine, publish) as u:
        intents.capture(u, merchant, held, 1000)
        u.commit()
    with UnitOfWork(engine, publish) as u:
        maintenance.open_window(u, "standard")
        u.commit()
    settled = f.wait_until_final(engine, [held, standard], final=("succeeded",), timeout=30)
    _wait_settled(engine, [held, standard])
    assert settled[held].amount_received == 1000

    # The beat jobs' use cases, as the background worker runs them.
    today = datetime.now(UTC).date()
    with UnitOfWork(engine, publish) as u:
        maintenance.redrive(u, 3600)
        maintenance.expire_holds(u)
        maintenance.send_due_webhooks(u)
        retention.prune_idempotency_keys(u, 24, 1000)
        retention.purge_card_data(u, 30, 1000)
        retention.prune_webhook_attempts(u, 30, 1000)
        retention.prune_events(u, 90, 1000)
        report = maintenance.daily_report(u, today)
        u.commit()
    assert report["rows"] >= 1
    with UnitOfWork(engine) as u:
        sealed = maintenance.daily_report(u, today - timedelta(days=1))
        u.commit()
        assert ledger_verify.verify(u).problems == []
    assert sealed["date"] == (today - timedelta(days=1)).isoformat()
    books_balance()

    # Every session the worker, the relay and this test opened was the app role's.
    with admin_engine.connect() as conn:
        users = conn.execute(
            text(
                "SELECT DISTINCT usename FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalars()
        assert set(users) == {roles.APP}


def _wait_settled(engine, ids, timeout: float = 30) -> None:
    from tests.support.waiting import until

    def settled():
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT bool_and(settlement_status = 'settled') FROM payment_intents"
                    " WHERE id = ANY(:ids)"
                ),
                {"ids": ids},
            ).scalar()

    until(settled, timeout=timeout, what="both intents settled")


# --- clearhouse db upgrade on a cluster of its own ------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    pg = PrivatePostgres()
    pg.init().start()
    yield pg
    pg.destroy()


def _upgrade(pg: PrivatePostgres, db: str, **env) -> subprocess.CompletedProcess:
    """``clearhouse db upgrade`` as set up by default: DATABASE_URL names the app role,
    MIGRATION_DATABASE_URL is unset (the same server and database as ``postgres``)."""
    return _cli_upgrade(pg.url(db, user=roles.APP), **env)


def _cli_upgrade(app_url: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python_bin("clearhouse"), "db", "upgrade"],
        env={**os.environ, "MIGRATION_DATABASE_URL": "", "DATABASE_URL": app_url, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _privileges(pg: PrivatePostgres, db: str) -> dict:
    engine = create_engine(pg.url(db), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.relname, pg_get_userbyid(c.relowner),"
                    " has_table_privilege(:app, c.oid, 'UPDATE'),"
                    " has_table_privilege(:app, c.oid, 'INSERT'),"
                    " has_table_privilege(:app, c.oid, 'TRUNCATE')"
                    " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
                    " AND c.relkind = 'r'"
                ),
                {"app": roles.APP},
            ).all()
    finally:
        engine.dispose()
    return {r[0]: tuple(r[1:]) for r in rows}


def _roles(pg: PrivatePostgres) -> dict:
    engine = create_engine(pg.url("postgres"), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return dict(
                conn.execute(
                    text(
                        "SELECT rolname, rolcanlogin FROM pg_roles"
                        " WHERE rolname IN ('clearhouse_owner', 'clearhouse_app')"
                    )
                ).all()
            )
    finally:
        engine.dispose()


def _check_upgraded(pg: PrivatePostgres, db: str) -> None:
    grants = _privileges(pg, db)
    assert grants["ledger_transfers"] == (roles.OWNER, False, True, False)
    assert grants["ledger_seals"] == (roles.OWNER, False, True, False)
    assert grants["payment_intents"] == (roles.OWNER, True, True, False)
    assert {owner for owner, *_ in grants.values()} == {roles.OWNER}


def test_db_upgrade_by_several_processes_at_once():
    # On a fresh cluster, two databases and one: the roles race between databases
    # (they are the cluster's), the migration between processes on one database.
    pg = PrivatePostgres()
    pg.init().start()
    try:
        dbs = ["roles_race_a", "roles_race_a", "roles_race_b", "roles_race_b"]
        with ThreadPoolExecutor(len(dbs)) as pool:
            outs = list(pool.map(lambda db: _upgrade(pg, db), dbs))
        assert [o.returncode for o in outs] == [0] * len(dbs), [o.stderr for o in outs]
        assert _roles(pg) == {roles.OWNER: False, roles.APP: True}
        for db in set(dbs):
            _check_upgraded(pg, db)
    finally:
        pg.destroy()


def test_db_upgrade_of_an_old_database_whose_roles_exist(cluster):
    """A database migrated before the roles (as the superuser) is taken over on upgrade."""
    from shared.db.migrate import create_database

    url = cluster.url("roles_legacy")
    create_database(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:  # what an older release did: migrate as postgres
            conn.execute(text("CREATE TABLE legacy_notes (id bigserial PRIMARY KEY)"))
            conn.commit()
    finally:
        engine.dispose()
    assert _upgrade(cluster, "roles_exist").returncode == 0  # the roles exist from here on
    out = _upgrade(cluster, "roles_legacy")
    assert out.returncode == 0, out.stderr
    _check_upgraded(cluster, "roles_legacy")
    assert _privileges(cluster, "roles_legacy")["legacy_notes"] == (roles.OWNER, True, True, False)


def test_db_upgrade_as_the_owner_itself_and_refused_to_the_app(cluster):
    """MIGRATION_DATABASE_URL may name clearhouse_owner (given LOGIN); never the app role."""
    assert _upgrade(cluster, "roles_owner").returncode == 0
    admin = create_engine(cluster.url("postgres"), poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text("ALTER ROLE clearhouse_owner LOGIN"))
            conn.commit()
        as_owner = cluster.url("roles_owner", user=roles.OWNER)
        out = _upgrade(cluster, "roles_owner", MIGRATION_DATABASE_URL=as_owner)
        assert out.returncode == 0, out.stderr
        _check_upgraded(cluster, "roles_owner")

        as_app = cluster.url("roles_owner", user=roles.APP)
        out = _upgrade(cluster, "roles_owner", MIGRATION_DATABASE_URL=as_app)
        assert out.returncode == 1
        assert "clearhouse_app can neither act as clearhouse_owner" in out.stderr
    finally:
        with admin.connect() as conn:
            conn.execute(text("ALTER ROLE clearhouse_owner NOLOGIN"))
            conn.commit()
        admin.dispose()


def test_db_upgrade_creates_both_roles_and_runs_twice():
    """On a cluster where neither role exists; the password of DATABASE_URL is stored hashed."""
    pg = PrivatePostgres()
    pg.init().start()
    try:
        assert _roles(pg) == {}
        app_url = pg.url("roles_twice", user=f"{roles.APP}:s3cr%40t")
        for _ in range(2):
            out = _cli_upgrade(app_url)
            assert out.returncode == 0, out.stderr
        assert _roles(pg) == {roles.OWNER: False, roles.APP: True}
        _check_upgraded(pg, "roles_twice")
        engine = create_engine(pg.url("postgres"), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                stored = conn.execute(
                    text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": roles.APP}
                ).scalar()
        finally:
            engine.dispose()
        assert stored.startswith("SCRAM-SHA-256$") and "s3cr" not in stored
    finally:
        pg.destroy()


def test_db_upgrade_as_a_createrole_role():
    """A CREATEROLE, CREATEDB login (no superuser) creates the roles and the database, and
    hands the database to the owner."""
    pg = PrivatePostgres()
    pg.init().start()
    try:
        admin = create_engine(pg.url("postgres"), poolclass=NullPool)
        try:
            with admin.connect() as conn:
                conn.execute(text("CREATE ROLE roles_admin LOGIN CREATEROLE CREATEDB"))
                conn.commit()
        finally:
            admin.dispose()
        as_admin = pg.url("roles_createrole", user="roles_admin")
        out = _upgrade(pg, "roles_createrole", MIGRATION_DATABASE_URL=as_admin)
        assert out.returncode == 0, out.stderr
        assert _roles(pg) == {roles.OWNER: False, roles.APP: True}
        _check_upgraded(pg, "roles_createrole")
    finally:
        pg.destroy()


def test_db_upgrade_puts_back_grants_changed_by_hand(cluster):
    assert _upgrade(cluster, "roles_regrant").returncode == 0
    admin = create_engine(cluster.url("roles_regrant"), poolclass=NullPool)

    def held() -> list:
        with admin.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT has_table_privilege(:r, 'ledger_transfers', 'UPDATE'),"
                        " has_table_privilege(:r, 'ledger_seals', 'TRUNCATE'),"
                        " has_column_privilege(:r, 'ledger_accounts', 'no_overdraft', 'UPDATE'),"
                        " has_column_privilege(:r, 'ledger_accounts', 'credits_posted', 'UPDATE')"
                    ),
                    {"r": roles.APP},
                ).one()
            )

    try:
        with admin.connect() as conn:
            conn.execute(text("GRANT UPDATE ON ledger_transfers TO PUBLIC"))
            conn.execute(text("GRANT TRUNCATE ON ledger_seals TO clearhouse_app"))
            conn.execute(text("GRANT UPDATE (no_overdraft) ON ledger_accounts TO clearhouse_app"))
            conn.commit()
        assert held() == [True, True, True, True]
        assert _upgrade(cluster, "roles_regrant").returncode == 0
        assert held() == [False, False, False, True]
    finally:
        admin.dispose()
