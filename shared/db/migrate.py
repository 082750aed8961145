"""Schema migrations, run programmatically (no alembic.ini, no dependence on the CWD).

``upgrade(url)`` is what ``clearhouse db upgrade`` and the tests call: it creates
the database if needed and brings it to the newest revision. Several processes
may call it at once (compose ``migrate`` plus an API booting, parallel test
workers): database creation tolerates the race and the upgrade itself runs
under a Postgres advisory lock, so the second caller waits and then finds
nothing to do.

Roles (``shared.db.roles``): ``database_url`` here is the migration
connection (``MIGRATION_DATABASE_URL``: a superuser, a CREATEROLE role or
``clearhouse_owner`` itself). Under the lock, it makes sure ``clearhouse_owner`` and
``clearhouse_app`` exist and that the owner owns the database, then runs the
migrations as the owner (``SET ROLE``) and finally reapplies the app role's
grants, so what a migration adds is covered before anyone uses it.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.db import roles

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary constant: pg_advisory_lock key for "a migration is running".
MIGRATION_LOCK_KEY = 0x636C_6561_7268_6F75  # "clearhou"
# Serializes CREATE DATABASE between concurrent callers (taken in the maintenance db).
CREATE_DB_LOCK_KEY = MIGRATION_LOCK_KEY + 1
# How often a caller waiting for another's migration tries the lock again.
LOCK_POLL_S = 0.2

_DUPLICATE_DATABASE = "42P04"
_UNIQUE_VIOLATION = "23505"


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def make_config(database_url: str) -> Config:
    """An alembic Config pointing at this package's migrations and ``database_url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal '%' (URL-encoded password) must be doubled.
    cfg.set_main_option("sqlalchemy.url", _render(make_url(database_url)).replace("%", "%%"))
    return cfg


def _maintenance_connect(url: URL) -> tuple[object, Connection]:
    """Connect with AUTOCOMMIT to the ``postgres`` maintenance db (``template1`` fallback)."""
    last_exc: Exception | None = None
    for name in ("postgres", "template1"):
        engine = create_engine(
            _render(url.set(database=name)), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            return engine, engine.connect()
        except OperationalError as exc:
            engine.dispose()
            last_exc = exc
    assert last_exc is not None
    raise last_exc


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)


def create_database(database_url: str) -> bool:
    """Create the database named in ``database_url`` if missing. True if it was created."""
    url = make_url(database_url)
    name = url.database
    if not name:
        raise ValueError(f"database URL names no database: {url!r}")
    engine, conn = _maintenance_connect(url)
    try:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": CREATE_DB_LOCK_KEY})
        try:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if exists:
                return False
            try:
                conn.execute(text(f"CREATE DATABASE {_quote(conn, name)}"))
            except DBAPIError as exc:
                # Another cluster client (not using our lock) got there first.
                if _sqlstate(exc) in (_DUPLICATE_DATABASE, _UNIQUE_VIOLATION):
                    return False
                raise
            return True
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": CREATE_DB_LOCK_KEY})
    finally:
        conn.close()
        engine.dispose()


def _can_connect(database_url: str) -> bool:
    """True if the database exists and accepts us (no maintenance-db access needed then)."""
    engine = create_engine(_render(make_url(database_url)), poolclass=pool.NullPool)
    try:
        with engine.connect():
            return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


def drop_database(database_url: str) -> None:
    """Drop the database named in ``database_url`` if it exists, ending its sessions (FORCE)."""
    url = make_url(database_url)
    name = url.database
    if not name or name in ("postgres", "template0", "template1"):
        raise ValueError(f"refusing to drop database {name!r}")
    engine, conn = _maintenance_connect(url)
    try:
        conn.execute(text(f"DROP DATABASE IF EXISTS {_quote(conn, name)} WITH (FORCE)"))
    finally:
        conn.close()
        engine.dispose()


def _take_lock(conn: Connection) -> None:
    """Take the migration lock, polling: a caller waiting for it holds no snapshot.

    A session-level lock: it outlives the commits alembic makes per migration.
    Each try is a transaction of its own. Blocking in pg_advisory_lock would
    keep the waiting caller's statement (and its snapshot) open, and a
    migration building an index CONCURRENTLY waits for every older snapshot in
    the database: the two would deadlock.
    """
    while True:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        taken = got.scalar()
        conn.commit()
        if taken:
            return
        time.sleep(LOCK_POLL_S)


def _run_locked(database_url: str, action, app_password: str | None = None) -> None:
    """Run an alembic command as the owner role, holding the migration advisory lock.

    The app role's grants are reapplied afterwards, in their own transaction.
    """
    cfg = make_config(database_url)
    engine = create_engine(_render(make_url(database_url)), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _take_lock(conn)
            try:
                roles.create_roles(conn, app_password)
                conn.commit()
                roles.become_owner(conn)
                conn.commit()
                cfg.attributes["connection"] = conn
                action(cfg)
                conn.commit()
                roles.apply_grants(conn)
                conn.commit()
            finally:
                if conn.in_transaction():
                    conn.rollback()
                roles.reset(conn)
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head", *, app_password: str | None = None) -> None:
    """Create the database if needed, migrate it to ``revision`` (default: newest), grant.

    ``database_url`` is the migration connection's; ``app_password`` (the one in
    ``DATABASE_URL``, if any) is given to ``clearhouse_app`` when this creates it.
    """
    if not _can_connect(database_url):
        create_database(database_url)
    _run_locked(database_url, lambda cfg: command.upgrade(cfg, revision), app_password)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Migrate down to ``revision`` (default: drop everything). For tests and dev."""
    _run_locked(database_url, lambda cfg: command.downgrade(cfg, revision))


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    engine = create_engine(_render(make_url(database_url)), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


__all__ = [
    "MIGRATIONS_DIR",
    "create_database",
    "current_revision",
    "downgrade",
    "drop_database",
    "make_config",
    "upgrade",
]
