"""The two Postgres roles and what each may do (least privilege).

- ``clearhouse_owner`` owns the database, its ``public`` schema and every
  object in it; migrations run as it. NOLOGIN when ``db upgrade`` creates it:
  a superuser (or a CREATEROLE role) reaches it with ``SET ROLE``.
- ``clearhouse_app`` is what the API, workers, relay and beat log in as. It
  owns nothing and may only read and write rows: no TRUNCATE, REFERENCES or
  TRIGGER privilege, no CREATE in the schema, so it cannot ALTER, DROP or
  DISABLE TRIGGER anything (all of which need ownership). The ledger, its
  hash chain and the other records below it it may only read and append to:
  the immutability triggers refuse an UPDATE or DELETE, and so do the grants,
  so that neither is the only guard.

``apply_grants`` is rerun after every upgrade (with or without migrations to
run), so a table a migration adds is covered at once and a grant changed by
hand is put back.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

OWNER = "clearhouse_owner"
APP = "clearhouse_app"

# Written once, never changed or removed by any code path of the services: the
# app role may SELECT and INSERT only. (Sealing COPYs into ledger_entry_hashes,
# which INSERT covers.) A correction is a new row.
APPEND_ONLY = frozenset(
    {
        "ledger_transfers",
        "ledger_entry_hashes",
        "ledger_seals",
        "settlements",
        "audit_log",
    }
)
# Records the app appends and never rewrites, but which retention deletes once
# their time is up and an erasure tombstones (the personal data in the one
# column named): no other column may ever change.
RETAINED = {
    "events": ("data",),
    "webhook_attempts": ("response_body",),
}
# Alembic's bookkeeping: the app may read which revision it runs against.
READ_ONLY = frozenset({"alembic_version"})
# Tables the app may only update some columns of, and never delete from. An
# account's balances move with every transfer (and SELECT ... FOR UPDATE needs
# an UPDATE grant); its code, currency and no-overdraft rule never change.
COLUMN_UPDATES = {
    "ledger_accounts": ("debits_pending", "debits_posted", "credits_pending", "credits_posted"),
    # A seal's anchor until it is mined (resent, re-signed, then its block); its
    # day, hash, chain and sender never change, and its trigger stops the rest.
    "ledger_anchors": ("nonce", "tx_hash", "raw_tx", "sent_at", "block_number", "mined_at"),
}

_DUPLICATE_OBJECT = "42710"
_UNIQUE_VIOLATION = "23505"


class RoleError(RuntimeError):
    """The migrating connection cannot set up or reach the owner role."""


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)


def _q(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def current_role(conn: Connection):
    """(name, is superuser, may create roles) of the session's login role."""
    return conn.execute(
        text("SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = session_user")
    ).one()


def role_exists(conn: Connection, name: str) -> bool:
    found = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name})
    return bool(found.scalar())


def _hashed(conn: Connection, role: str, password: str) -> str:
    # Hashed here (SCRAM, or what the server's password_encryption says), so the
    # cleartext never reaches the server or its statement log.
    from psycopg2.extensions import encrypt_password

    return encrypt_password(password, role, conn.connection.dbapi_connection)


def ensure_role(conn: Connection, name: str, *, login: bool, password: str | None = None) -> bool:
    """Create role ``name`` unless it exists; True if this call created it.

    An existing role is left as it is (its LOGIN and password are the
    operator's). Safe against a concurrent creator: roles are cluster-wide, so
    two upgrades of two databases may race here, and the loser's duplicate
    error means the role now exists.
    """
    if role_exists(conn, name):
        return False
    stmt = f"CREATE ROLE {_q(conn, name)} {'LOGIN' if login else 'NOLOGIN'}"
    params = {}
    if password:
        # psycopg2 interpolates parameters client-side, so a utility statement takes one.
        stmt += " PASSWORD :password"
        params["password"] = _hashed(conn, name, password)
    try:
        with conn.begin_nested():  # a savepoint: the loser of a race carries on
            conn.execute(text(stmt), params)
    except DBAPIError as exc:
        if _sqlstate(exc) in (_DUPLICATE_OBJECT, _UNIQUE_VIOLATION):
            return False
        raise
    return True


def _is_member(conn: Connection, role: str) -> bool:
    """Whether the session's login role may SET ROLE to ``role``."""
    return bool(
        conn.execute(text("SELECT pg_has_role(session_user, :r, 'MEMBER')"), {"r": role}).scalar()
    )


def _grant_membership(conn: Connection, role: str) -> None:
    """Let the login role (a CREATEROLE one) SET ROLE to ``role``; races tolerated."""
    me = _q(conn, current_role(conn).rolname)
    try:
        with conn.begin_nested():
            conn.execute(text(f"GRANT {_q(conn, role)} TO {me}"))
    except DBAPIError as exc:
        if _sqlstate(exc) not in (_DUPLICATE_OBJECT, _UNIQUE_VIOLATION):
            raise


# What the login role may give away: what it owns (a superuser: everything) and
# OWNER does not own yet. A CREATEROLE role hands over the database it created.
_GIVABLE = "pg_get_userbyid({0}) <> :owner AND pg_has_role(session_user, {0}, 'MEMBER')"


def _take_ownership(conn: Connection) -> None:
    """Make OWNER own the database, its public schema and everything in it.

    For a database made before the roles existed (its tables owned by whoever
    migrated it) and for a fresh one alike; a no-op once done. The database
    first: the schema's new owner must be able to create in it.
    """
    owner, p = _q(conn, OWNER), {"owner": OWNER}
    db = conn.execute(
        text(
            "SELECT datname FROM pg_database WHERE datname = current_database()"
            f" AND {_GIVABLE.format('datdba')}"
        ),
        p,
    ).scalar()
    if db:
        conn.execute(text(f"ALTER DATABASE {_q(conn, db)} OWNER TO {owner}"))
    schema = conn.execute(
        text(
            f"SELECT 1 FROM pg_namespace WHERE nspname = 'public' AND {_GIVABLE.format('nspowner')}"
        ),
        p,
    ).scalar()
    if schema:
        conn.execute(text(f"ALTER SCHEMA public OWNER TO {owner}"))
    # Tables first: a sequence owned by a column follows its table (and may not
    # be given away on its own); indexes always follow.
    for kind, relkinds in (("TABLE", "rpvmf"), ("SEQUENCE", "S")):
        rows = (
            conn.execute(
                text(
                    "SELECT c.oid::regclass::text FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relkind = ANY(:kinds)"
                    f" AND {_GIVABLE.format('c.relowner')}"
                ),
                {"kinds": list(relkinds), "owner": OWNER},
            )
            .scalars()
            .all()
        )
        for name in rows:
            conn.execute(text(f"ALTER {kind} {name} OWNER TO {owner}"))
    functions = (
        conn.execute(
            text(
                "SELECT p.oid::regprocedure::text FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace"
                f" WHERE n.nspname = 'public' AND {_GIVABLE.format('p.proowner')}"
            ),
            {"owner": OWNER},
        )
        .scalars()
        .all()
    )
    for signature in functions:
        conn.execute(text(f"ALTER ROUTINE {signature} OWNER TO {owner}"))


def create_roles(conn: Connection, app_password: str | None = None) -> None:
    """Create OWNER (NOLOGIN) and APP (LOGIN) where missing, if the login role may.

    ``conn`` is the migration connection (a superuser, a CREATEROLE role or
    OWNER itself). The caller commits at once, on its own: roles are
    cluster-wide, and a short transaction keeps a concurrent upgrade of
    another database from waiting long on them.
    """
    me = current_role(conn)
    if me.rolsuper or me.rolcreaterole:
        ensure_role(conn, OWNER, login=False)
        ensure_role(conn, APP, login=True, password=app_password)


def become_owner(conn: Connection) -> None:
    """Before migrating: OWNER owns the database, and the session acts as OWNER from here on."""
    me = current_role(conn)
    missing = [r for r in (OWNER, APP) if not role_exists(conn, r)]
    if missing:
        raise RoleError(
            f"role(s) {', '.join(missing)} missing and {me.rolname} may not create roles:"
            " run `clearhouse db upgrade` once with MIGRATION_DATABASE_URL naming a superuser"
        )
    if me.rolname != OWNER:
        if not me.rolsuper and not _is_member(conn, OWNER):
            if not me.rolcreaterole:
                raise RoleError(
                    f"{me.rolname} can neither act as {OWNER} nor grant itself that role:"
                    f" migrate as a superuser, a CREATEROLE role or {OWNER}"
                )
            _grant_membership(conn, OWNER)
        _take_ownership(conn)
        conn.execute(text(f"SET ROLE {_q(conn, OWNER)}"))
    # As the owner of the schema and database from here on.
    conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {_q(conn, APP)}"))
    database = _q(conn, conn.execute(text("SELECT current_database()")).scalar())
    conn.execute(text(f"GRANT CONNECT ON DATABASE {database} TO {_q(conn, APP)}"))


def apply_grants(conn: Connection) -> None:
    """Give APP exactly its privileges on every table and sequence of ``public``.

    Everything is revoked first (from PUBLIC too: what PUBLIC may do, APP may),
    then granted, in one transaction, so a session of APP never sees a table
    without its grants.
    """
    app = _q(conn, APP)
    tables = (
        conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
                " ORDER BY c.relname"
            )
        )
        .scalars()
        .all()
    )
    # Revoking a table's privileges revokes its columns' too (REVOKE's documentation).
    conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {app}, PUBLIC"))
    conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {app}, PUBLIC"))
    for table in tables:
        conn.execute(text(f"GRANT {privileges(table)} ON TABLE {_q(conn, table)} TO {app}"))
    # nextval for the BIGSERIAL ids; no setval (UPDATE), no reading them (SELECT).
    conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app}"))


def privileges(table: str) -> str:
    """The app role's privileges on ``table``."""
    if table in READ_ONLY:
        return "SELECT"
    if table in APPEND_ONLY:
        return "SELECT, INSERT"
    if table in RETAINED:
        return f"SELECT, INSERT, DELETE, UPDATE ({', '.join(RETAINED[table])})"
    if table in COLUMN_UPDATES:
        return f"SELECT, INSERT, UPDATE ({', '.join(COLUMN_UPDATES[table])})"
    return "SELECT, INSERT, UPDATE, DELETE"


def reset(conn: Connection) -> None:
    """Back to the login role (the connection is closed next; this is for tidiness)."""
    conn.execute(text("RESET ROLE"))
