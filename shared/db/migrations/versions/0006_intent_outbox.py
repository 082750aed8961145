"""Transactional outbox for new intents: enqueued_at, its index, the NOTIFY trigger.

Intents inserted before this migration are treated as already enqueued (the
scheduler's re-drive covers any that are still waiting).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db.tables import OUTBOX_NOTIFY_SQL

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "payment_intents", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE payment_intents SET enqueued_at = created_at")
    op.create_index(
        "ix_intents_outbox",
        "payment_intents",
        ["created_at"],
        postgresql_where=sa.text("enqueued_at IS NULL"),
    )
    op.execute(OUTBOX_NOTIFY_SQL)


def downgrade() -> None:
    op.execute("DROP TRIGGER payment_intents_outbox_notify ON payment_intents")
    op.execute("DROP FUNCTION payment_intents_outbox_notify()")
    op.drop_index("ix_intents_outbox", table_name="payment_intents")
    op.drop_column("payment_intents", "enqueued_at")
