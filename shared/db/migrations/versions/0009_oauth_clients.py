"""API clients get scopes, secret rotation and a certificate binding; refresh families an end.

Every column is added without rewriting its table: the nullable ones have no
default, and ``scopes`` has a constant default (Postgres 11+ stores it once in
the catalogue), which gives the clients made before scopes existed every scope,
as the single ``payments`` scope they had allowed everything. The two indexes
serve the API's revocation list (recently revoked clients) and revoking a
client (all its refresh tokens).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: a migration must not change when the application's list grows.
ALL_SCOPES = (
    "payment_intents:read payment_intents:write refunds:read refunds:write"
    " events:read events:write balance:read reports:read"
)


def upgrade() -> None:
    op.add_column(
        "api_clients", sa.Column("scopes", sa.Text, nullable=False, server_default=ALL_SCOPES)
    )
    op.add_column("api_clients", sa.Column("previous_secret_hash", sa.Text))
    op.add_column(
        "api_clients", sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True))
    )
    op.add_column("api_clients", sa.Column("cert_sha256", sa.String(64)))
    op.add_column("refresh_tokens", sa.Column("family_expires_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_api_clients_revoked",
        "api_clients",
        ["revoked_at"],
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )
    op.create_index("ix_refresh_tokens_client", "refresh_tokens", ["client_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_client", table_name="refresh_tokens")
    op.drop_index("ix_api_clients_revoked", table_name="api_clients")
    op.drop_column("refresh_tokens", "family_expires_at")
    for column in ("cert_sha256", "previous_secret_expires_at", "previous_secret_hash", "scopes"):
        op.drop_column("api_clients", column)
