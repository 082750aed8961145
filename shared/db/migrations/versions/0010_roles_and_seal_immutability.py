"""The hash chain gets the ledger's immutability trigger: ledger_seals, ledger_entry_hashes.

A seal (and each entry's chained hash) is written once by the sealing job and
only ever read after: an UPDATE, DELETE or TRUNCATE is refused, as for
ledger_transfers. The roles and grants that go with it (the app role may only
SELECT and INSERT these tables) are not a migration: ``clearhouse db upgrade``
reapplies them after every upgrade (``shared.db.roles``).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEALED = ("ledger_seals", "ledger_entry_hashes")

FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION ledger_chain_immutable() RETURNS trigger AS $$
BEGIN
    -- A seal is never rewritten: the chain is verified against what was written.
    RAISE EXCEPTION '% rows are immutable: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""


def upgrade() -> None:
    op.execute(FUNCTION_SQL)
    for table in SEALED:
        op.execute(
            f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION ledger_chain_immutable()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION ledger_chain_immutable()"
        )


def downgrade() -> None:
    for table in SEALED:
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_update_delete ON {table}")
    op.execute("DROP FUNCTION ledger_chain_immutable()")
