"""ledger_entry_hashes loses its foreign key to ledger_transfers.

Sealing COPYs one hash per transfer of the day into ledger_entry_hashes. The
foreign key's check of each row locks its transfer (FOR KEY SHARE), a write
to every transfer tuple of the day: 41 of the 46 s that sealing a
1,000,000-intent day (3.25 million transfers) spent in that COPY. The key
guarded nothing the chain does not: a hash is written only for a transfer
the sealer just read, in the same transaction; the app role may not delete
a transfer (shared/db/roles.py APPEND_ONLY, and 0001's immutability trigger);
and ``clearhouse ledger verify`` names a sealed transfer gone from the ledger.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "ledger_entry_hashes_transfer_id_fkey"


def upgrade() -> None:
    op.execute(f"ALTER TABLE ledger_entry_hashes DROP CONSTRAINT IF EXISTS {FK}")


def downgrade() -> None:
    op.create_foreign_key(FK, "ledger_entry_hashes", "ledger_transfers", ["transfer_id"], ["id"])
