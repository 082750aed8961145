"""Operator accounts and the audit trail: ``operators``, ``audit_log``.

An operator's TOTP secret is encrypted with the card keys (as a webhook
secret), bound by AAD to the operator's id; ``totp_last_step`` is the last
time step accepted, so a code is never accepted twice. Emails are unique
whatever their case (a unique index on ``lower(email)``).

``audit_log`` gets the immutability trigger of the hash chain (0010): an
UPDATE, DELETE or TRUNCATE is refused; the app role's grants (SELECT, INSERT)
are ``shared.db.roles``'s, reapplied by ``clearhouse db upgrade``.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: a migration must not change when the application's list grows.
ROLES = ("admin", "support", "viewer")


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("password_temporary", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("totp_secret_enc", sa.Text, nullable=False),
        sa.Column("totp_last_step", sa.BigInteger),
        sa.Column("disabled_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(f"role IN {ROLES!r}", name="ck_operators_role"),
    )
    op.create_index("uq_operators_email", "operators", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("request_id", sa.String(64)),
        sa.Column("source_ip", sa.String(64)),
        sa.Column("before", JSONB),
        sa.Column("after", JSONB),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    # ledger_chain_immutable() is 0010's.
    op.execute(
        "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION ledger_chain_immutable()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION ledger_chain_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER audit_log_no_update_delete ON audit_log")
    op.drop_table("audit_log")
    op.drop_table("operators")
