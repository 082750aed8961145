"""BRIN index on ledger_transfers.created_at for the daily report and sealing

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # BRIN, not B-tree: transfers are append-only with created_at rising, so a
    # few pages of ranges find a day, and inserts on the hot path pay ~nothing.
    op.create_index(
        "ix_transfers_created_brin",
        "ledger_transfers",
        ["created_at"],
        unique=False,
        postgresql_using="brin",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_transfers_created_brin", table_name="ledger_transfers", postgresql_using="brin"
    )
