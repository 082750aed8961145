"""Initial schema: every table, constraint and index of shared.db.tables.

Written out explicitly (not ``metadata.create_all``) so later changes to
``tables.py`` need their own migration. Constraint names left unnamed here get
Postgres' default names, the same ones ``create_all`` would produce, so
autogenerate against ``tables.metadata`` reports no difference.

Revision ID: 0001
Revises:
Create Date: 2024-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Money = tables.Money
TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")
ZERO = sa.text("0")


def _created_at() -> sa.Column:
    return sa.Column("created_at", TZ, nullable=False, server_default=NOW)


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("webhook_url", sa.Text()),
        sa.Column("webhook_secret_enc", sa.Text(), nullable=False),
        sa.Column("fraud_block_threshold", sa.Integer()),
        sa.Column("fee_plan", JSONB()),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )

    op.create_table(
        "api_clients",
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("revoked_at", TZ),
        _created_at(),
        sa.PrimaryKeyConstraint("client_id"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    )

    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("family_id", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ),
        sa.Column("revoked_at", TZ),
        _created_at(),
        sa.PrimaryKeyConstraint("token_hash"),
        sa.ForeignKeyConstraint(["client_id"], ["api_clients.client_id"]),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])

    op.create_table(
        "merchant_limits",
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("per_transaction", Money()),
        sa.Column("daily", Money()),
        sa.Column("monthly", Money()),
        sa.PrimaryKeyConstraint("merchant_id", "currency", "scope"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    )

    op.create_table(
        "limit_counters",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("used", Money(), nullable=False, server_default=ZERO),
        sa.PrimaryKeyConstraint("key"),
        sa.CheckConstraint("used >= 0", name="limit_counters_used_nonnegative"),
    )

    op.create_table(
        "blocklist",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text()),
        _created_at(),
        sa.PrimaryKeyConstraint("kind", "value"),
    )

    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("debits_pending", Money(), nullable=False, server_default=ZERO),
        sa.Column("debits_posted", Money(), nullable=False, server_default=ZERO),
        sa.Column("credits_pending", Money(), nullable=False, server_default=ZERO),
        sa.Column("credits_posted", Money(), nullable=False, server_default=ZERO),
        sa.Column("no_overdraft", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
        sa.CheckConstraint(
            "NOT no_overdraft OR debits_pending + debits_posted <= credits_posted",
            name="ledger_accounts_no_overdraft",
        ),
    )

    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debit_account_id", sa.BigInteger(), nullable=False),
        sa.Column("credit_account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("pending_id", sa.BigInteger()),
        sa.Column("timeout_at", TZ),
        sa.Column("intent_id", sa.String(40)),
        sa.Column("reason", sa.String(32), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["debit_account_id"], ["ledger_accounts.id"]),
        sa.ForeignKeyConstraint(["credit_account_id"], ["ledger_accounts.id"]),
        sa.ForeignKeyConstraint(["pending_id"], ["ledger_transfers.id"]),
        sa.UniqueConstraint("pending_id"),
        sa.CheckConstraint("amount > 0", name="ledger_transfers_amount_positive"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ledger_transfers_two_sides"
        ),
    )
    op.create_index("ix_ledger_transfers_intent_id", "ledger_transfers", ["intent_id"])

    op.create_table(
        "wallets",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["account_id"], ["ledger_accounts.id"]),
    )

    op.create_table(
        "payment_intents",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("stage", sa.String(24), nullable=False),
        sa.Column("capture_method", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("pm_type", sa.String(16), nullable=False),
        sa.Column("card_token", sa.Text()),
        sa.Column("card_fingerprint", sa.String(64)),
        sa.Column("card_last4", sa.String(4)),
        sa.Column("card_brand", sa.String(16)),
        sa.Column("card_exp_month", sa.Integer()),
        sa.Column("card_exp_year", sa.Integer()),
        sa.Column("wallet_id", sa.String(40)),
        sa.Column("payer_key", sa.Text(), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("metadata", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("customer", sa.Text()),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("risk_score", sa.Integer()),
        sa.Column("risk_reasons", JSONB()),
        sa.Column("fee_amount", Money()),
        sa.Column("amount_capturable", Money(), nullable=False, server_default=ZERO),
        sa.Column("amount_received", Money(), nullable=False, server_default=ZERO),
        sa.Column("amount_refunded", Money(), nullable=False, server_default=ZERO),
        sa.Column("failure_code", sa.String(32)),
        sa.Column("failure_message", sa.Text()),
        sa.Column("cancellation_reason", sa.String(32)),
        sa.Column("settlement_status", sa.String(16)),
        sa.Column("limit_reserved", Money(), nullable=False, server_default=ZERO),
        sa.Column("limit_day", sa.Date()),
        sa.Column("hold_transfer_id", sa.BigInteger()),
        sa.Column("hold_expires_at", TZ),
        sa.Column("auth_attempts", sa.Integer(), nullable=False, server_default=ZERO),
        _created_at(),
        sa.Column("updated_at", TZ, nullable=False, server_default=NOW),
        sa.Column("stage_changed_at", TZ, nullable=False, server_default=NOW),
        sa.Column("finalized_at", TZ),
        sa.Column("settled_at", TZ),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint("amount > 0", name="payment_intents_amount_positive"),
    )
    op.create_index(
        "ix_intents_merchant_created", "payment_intents", ["merchant_id", "created_at", "id"]
    )
    op.create_index(
        "ix_intents_fingerprint_created", "payment_intents", ["card_fingerprint", "created_at"]
    )
    op.create_index("ix_intents_payer_currency", "payment_intents", ["payer_key", "currency"])
    op.create_index(
        "ix_intents_processing",
        "payment_intents",
        ["stage_changed_at"],
        postgresql_where=sa.text("status = 'processing'"),
    )
    op.create_index(
        "ix_intents_holds",
        "payment_intents",
        ["hold_expires_at"],
        postgresql_where=sa.text("status = 'requires_capture'"),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_method", sa.String(8), nullable=False),
        sa.Column("request_path", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response_status", sa.Integer()),
        sa.Column("response_body", JSONB()),
        sa.Column("locked_at", TZ),
        _created_at(),
        sa.PrimaryKeyConstraint("merchant_id", "key"),
    )
    op.create_index("ix_idempotency_created", "idempotency_keys", ["created_at"])

    # Ledger transfers can be inserted, never updated, deleted or truncated.
    op.execute(tables.LEDGER_IMMUTABLE_SQL)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ledger_transfers_no_truncate ON ledger_transfers")
    op.execute("DROP TRIGGER IF EXISTS ledger_transfers_no_update_delete ON ledger_transfers")
    op.execute("DROP FUNCTION IF EXISTS ledger_transfers_immutable()")

    op.drop_index("ix_idempotency_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")

    op.drop_index("ix_intents_holds", table_name="payment_intents")
    op.drop_index("ix_intents_processing", table_name="payment_intents")
    op.drop_index("ix_intents_payer_currency", table_name="payment_intents")
    op.drop_index("ix_intents_fingerprint_created", table_name="payment_intents")
    op.drop_index("ix_intents_merchant_created", table_name="payment_intents")
    op.drop_table("payment_intents")

    op.drop_table("wallets")
    op.drop_index("ix_ledger_transfers_intent_id", table_name="ledger_transfers")
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")
    op.drop_table("blocklist")
    op.drop_table("limit_counters")
    op.drop_table("merchant_limits")
    op.drop_index("ix_refresh_tokens_family_id", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("api_clients")
    op.drop_table("merchants")
