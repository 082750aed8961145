"""Bank payments by two-phase commit: settlement bank accounts and the decision log.

- ``merchants.settlement_bank`` / ``settlement_bank_account``: where a merchant's
  bank payments are credited (``clearhouse merchant set-bank-account``);
- ``payment_intents.bank`` / ``bank_account``: the payer's account of a
  ``bank_account`` payment;
- ``bank_transactions``: one row per two-phase transaction, written before any bank
  is asked (so the resolver can find it when its coordinator dies), its participants,
  their votes, the decision (committed in its own transaction before any bank is told)
  and each bank's acknowledgement. A row with no decision is presumed aborted once it
  is ``BANK_DECISION_TIMEOUT_S`` old; the resolver re-sends a decision until every
  bank acknowledged it (``completed_at``).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns without defaults: catalog changes, no table rewrite.
    op.add_column("merchants", sa.Column("settlement_bank", sa.String(32)))
    op.add_column("merchants", sa.Column("settlement_bank_account", sa.String(64)))
    op.add_column("payment_intents", sa.Column("bank", sa.String(32)))
    op.add_column("payment_intents", sa.Column("bank_account", sa.String(64)))
    op.create_table(
        "bank_transactions",
        sa.Column("id", sa.String(48), primary_key=True),
        sa.Column("intent_id", sa.String(40), nullable=False, index=True),
        # payment | refund
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("refund_id", sa.String(40)),
        sa.Column("currency", sa.String(8), nullable=False),
        # [{"role": "payer"|"merchant", "bank", "account", "amount" (text), "is_credit"}]
        sa.Column("participants", JSONB, nullable=False),
        # {role: {"vote": "ready"|"refused"|"unavailable", "reason", "at"}}
        sa.Column("votes", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("decision", sa.String(8)),
        # Why an abort: insufficient_funds, bank_unavailable, presumed_abort, ...
        sa.Column("reason", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        # {role: {"state": "committed"|"aborted", "at"}}: what each bank acknowledged.
        sa.Column("acks", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("decision IN ('commit', 'abort')", name="bank_transactions_decision"),
        sa.CheckConstraint("kind IN ('payment', 'refund')", name="bank_transactions_kind"),
    )
    # The resolver's scan: transactions some bank has not acknowledged yet.
    op.create_index(
        "ix_bank_transactions_open",
        "bank_transactions",
        ["created_at"],
        postgresql_where=sa.text("completed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("bank_transactions")
    op.drop_column("payment_intents", "bank_account")
    op.drop_column("payment_intents", "bank")
    op.drop_column("merchants", "settlement_bank_account")
    op.drop_column("merchants", "settlement_bank")
