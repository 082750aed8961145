"""A sealed ledger of a test's own (a throwaway database), and the superuser's attacks on it."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

TODAY = datetime.now(UTC).date()
DAY1, DAY2, DAY3 = (TODAY - timedelta(days=n) for n in (5, 4, 3))


def at(day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def accounts(conn) -> tuple[int, int]:
    """The two accounts every transfer here moves money between: (debit, credit)."""
    ids = conn.execute(
        text(
            "INSERT INTO ledger_accounts (code, currency) VALUES"
            " ('external:card_clearing:USD', 'USD'), ('merchant:m1:pending:USD', 'USD')"
            " RETURNING id"
        )
    ).scalars()
    return tuple(ids)


def transfer(conn, debit, credit, amount, created_at, kind="posted", pending_id=None) -> int:
    return conn.execute(
        text(
            "INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id, amount,"
            " currency, pending_id, intent_id, reason, created_at)"
            " VALUES (:k, :d, :c, :a, 'USD', :p, 'pi_x', 'capture', :t) RETURNING id"
        ),
        {"k": kind, "d": debit, "c": credit, "a": amount, "p": pending_id, "t": created_at},
    ).scalar_one()


def populate(engine) -> dict:
    """Transfers on DAY1 and DAY3 (none on DAY2), one crossing midnight out of id order."""
    with engine.begin() as conn:
        a, b = accounts(conn)
        ids = {
            "d3_late": transfer(conn, a, b, 50, at(DAY3, 23, 59)),
            "d1_a": transfer(conn, a, b, 100, at(DAY1, 0, 0)),
            "d1_b": transfer(conn, a, b, 200, at(DAY1, 12)),
            "d3_hold": transfer(conn, a, b, 300, at(DAY3, 1), kind="pending"),
        }
        ids["d3_post"] = transfer(conn, a, b, 250, at(DAY3, 2), "post_pending", ids["d3_hold"])
        ids["today"] = transfer(conn, a, b, 1, datetime.now(UTC))
    return ids


def cli(url, *args, env=None):
    """Run ``clearhouse *args`` on the database at ``url`` (and ``env``), as an operator would."""
    from tests.conftest import python_bin

    env = {**os.environ, **(env or {}), "DATABASE_URL": url}
    return subprocess.run(
        [python_bin("clearhouse"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def superuser_sql(admin, sql, **params):
    # A superuser may skip triggers (and FK checks) for its session: the attack modeled
    # (the app role may do neither: tests/integration/test_db_roles.py).
    with admin.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(sql), params)


def rewrite_history(admin, sql, until, **params):
    """As a superuser: change the ledger with ``sql``, then seal every day again up to ``until``.

    The whole chain is recomputed over the changed ledger, so the database's
    own verification finds nothing: only an anchor outside it can.
    """
    from shared.services import seals
    from tests.support.units import bound

    with admin.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(sql), params)
        conn.execute(text("DELETE FROM ledger_entry_hashes"))
        conn.execute(text("DELETE FROM ledger_seals"))
    # Sealed once the rewrite is in: a sealing transaction reads the ledger as
    # committed (shared/services/seals.py _chain_and_store).
    with admin.begin() as conn:
        seals.seal_day(bound(conn), until)
