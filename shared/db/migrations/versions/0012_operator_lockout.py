"""Operator lockout: failed logins counted on the account, so every API process agrees.

``failed_logins`` failures since ``first_failure_at`` (within the window)
lock the account until ``locked_until`` (shared/domain/operator_lockout.py).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "operators",
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.add_column("operators", sa.Column("first_failure_at", sa.DateTime(timezone=True)))
    op.add_column("operators", sa.Column("locked_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("operators", "locked_until")
    op.drop_column("operators", "first_failure_at")
    op.drop_column("operators", "failed_logins")
