"""Index for the fraud stage's IP velocity count.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_intents_client_ip_created", "payment_intents", ["client_ip", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_intents_client_ip_created", table_name="payment_intents")
