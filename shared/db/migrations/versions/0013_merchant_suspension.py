"""Merchant suspension: ``merchants.suspended_at`` and ``suspended_reason``.

A suspended merchant's clients are refused on every merchant route and at the
token endpoint; resuming clears both columns. The API reads the suspended
merchants about once a second (shared/services/suspensions.py), so a partial
index keeps that read to the few suspended rows.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("merchants", sa.Column("suspended_at", sa.DateTime(timezone=True)))
    op.add_column("merchants", sa.Column("suspended_reason", sa.Text))
    op.create_index(
        "ix_merchants_suspended",
        "merchants",
        ["id"],
        postgresql_where=sa.text("suspended_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_merchants_suspended", "merchants")
    op.drop_column("merchants", "suspended_reason")
    op.drop_column("merchants", "suspended_at")
