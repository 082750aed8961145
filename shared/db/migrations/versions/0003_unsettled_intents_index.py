"""index of succeeded intents waiting for settlement

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Settlement windows and the instant re-drive look up exactly these rows;
    # partial, so it stays as small as the backlog however many intents settled.
    op.create_index(
        "ix_intents_unsettled",
        "payment_intents",
        ["priority", "merchant_id", "currency", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'succeeded' AND settlement_status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_intents_unsettled",
        table_name="payment_intents",
        postgresql_where=sa.text("status = 'succeeded' AND settlement_status = 'pending'"),
    )
