"""Webhook endpoints: several per merchant, each with its URL, secret, event types and switch.

Every merchant gets its first endpoint from its own row: its URL (NULL if it had
none), its secret and any previous secret still in its overlap, every event type
(``{*}``) and enabled, created when the merchant was (so it stays the oldest, the
first). A migration holds no card keys, so the ciphertexts are copied as they
are, still bound to the merchant's id: ``secret_aad`` says so, and the
endpoint's first rotation re-seals them under its own id. Existing deliveries
are pointed at their merchant's first endpoint (one write per delivery row).

The merchants' own webhook columns stay (now nullable, unused by this version)
so that processes of the version before keep working during a rolling deploy;
deliveries they write carry no endpoint and go to the merchant's first one.
API clients that had every scope get the two new ones (``webhook_endpoints:read``,
``webhook_endpoints:write``), as 0009 gave clients every scope of its day.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: a migration must not change when the application's list grows.
OLD_ALL_SCOPES = (
    "payment_intents:read payment_intents:write refunds:read refunds:write"
    " events:read events:write balance:read reports:read"
)
NEW_ALL_SCOPES = (
    "payment_intents:read payment_intents:write refunds:read refunds:write"
    " events:read events:write webhook_endpoints:read webhook_endpoints:write"
    " balance:read reports:read"
)
# 24 hex digits (96 bits) as shared/services/ids.py makes them: the digest of 122
# random bits, so no fixed UUID version digit among them.
NEW_ID = "'we_' || substr(md5(CAST(gen_random_uuid() AS text)), 1, 24)"


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("merchant_id", sa.String(40), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("secret_enc", sa.Text, nullable=False),
        sa.Column("secret_prev_enc", sa.Text),
        sa.Column("secret_prev_expires_at", sa.DateTime(timezone=True)),
        sa.Column("secret_aad", sa.String(40)),
        sa.Column("enabled_events", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'enabled'")),
        sa.Column("description", sa.Text),
        sa.Column(
            "metadata", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('enabled', 'disabled')", name="ck_webhook_endpoints_status"),
    )
    op.create_index(
        "ix_webhook_endpoints_merchant",
        "webhook_endpoints",
        ["merchant_id", "created_at", "id"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.execute(
        "INSERT INTO webhook_endpoints (id, merchant_id, url, secret_enc, secret_prev_enc,"
        " secret_prev_expires_at, secret_aad, enabled_events, created_at)"
        f" SELECT {NEW_ID}, m.id, m.webhook_url, m.webhook_secret_enc,"
        " m.webhook_secret_prev_enc, m.webhook_secret_prev_expires_at, m.id, '{*}', m.created_at"
        " FROM merchants m"
    )
    op.alter_column("merchants", "webhook_secret_enc", nullable=True)

    op.add_column(
        "webhook_deliveries",
        sa.Column("endpoint_id", sa.String(40), sa.ForeignKey("webhook_endpoints.id")),
    )
    op.execute(
        "UPDATE webhook_deliveries d SET endpoint_id = e.id FROM webhook_endpoints e"
        " WHERE e.merchant_id = d.merchant_id"
    )
    op.create_index(
        "ix_deliveries_endpoint_created",
        "webhook_deliveries",
        ["endpoint_id", "created_at", "id"],
    )

    op.execute(
        sa.text("UPDATE api_clients SET scopes = :new WHERE scopes = :old").bindparams(
            new=NEW_ALL_SCOPES, old=OLD_ALL_SCOPES
        )
    )
    op.alter_column("api_clients", "scopes", server_default=NEW_ALL_SCOPES)


def downgrade() -> None:
    op.alter_column("api_clients", "scopes", server_default=OLD_ALL_SCOPES)
    for scope in ("webhook_endpoints:read", "webhook_endpoints:write"):
        op.execute(
            sa.text(
                "UPDATE api_clients SET scopes = btrim(regexp_replace("
                " ' ' || scopes || ' ', ' ' || :scope || ' ', ' '), ' ')"
            ).bindparams(scope=scope)
        )
    op.drop_index("ix_deliveries_endpoint_created", table_name="webhook_deliveries")
    op.drop_column("webhook_deliveries", "endpoint_id")
    # Back to the merchants row: each merchant's first endpoint's URL and, when it was
    # never rotated (still sealed for the merchant), its secrets. A secret sealed for
    # the endpoint cannot be moved without the keys: it is marked so, and fails loudly
    # (WebhookDeliveriesUnsendable) until the merchant's secret is rotated.
    op.execute(
        "UPDATE merchants m SET webhook_url = f.url,"
        " webhook_secret_enc = CASE WHEN f.secret_aad = m.id THEN f.secret_enc"
        "   ELSE 'unrecoverable:' END,"
        " webhook_secret_prev_enc = CASE WHEN f.secret_aad = m.id THEN f.secret_prev_enc END,"
        " webhook_secret_prev_expires_at ="
        "   CASE WHEN f.secret_aad = m.id THEN f.secret_prev_expires_at END"
        " FROM (SELECT DISTINCT ON (merchant_id) * FROM webhook_endpoints"
        "       WHERE deleted_at IS NULL ORDER BY merchant_id, created_at, id) f"
        " WHERE f.merchant_id = m.id"
    )
    op.execute(
        "UPDATE merchants SET webhook_url = NULL, webhook_secret_enc = 'unrecoverable:'"
        " WHERE webhook_secret_enc IS NULL"
    )
    op.alter_column("merchants", "webhook_secret_enc", nullable=False)
    op.drop_index("ix_webhook_endpoints_merchant", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
