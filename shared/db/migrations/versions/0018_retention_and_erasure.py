"""Retention and erasure: the indexes the retention jobs walk, erased customers, a scope.

- ``ix_intents_card_purge`` (finalized_at) of final intents still holding a
  card token: the card-data purge takes the oldest without a sequential scan,
  and a purged intent leaves the index, so it stays as small as the backlog;
- ``ix_intents_merchant_customer``: an erasure finds a customer's intents;
- ``ix_events_created``, ``ix_attempts_created``: event and attempt retention
  take the oldest rows;
- ``customer_erasures``: one row per erased customer, named by a keyed hash;
- ``customers:write``: clients that held every scope get the new one (they
  were made as "everything"), and the column's default follows.

The indexes are built ``CONCURRENTLY`` (outside a transaction): the tables
they cover are the hottest, and a plain build would block their writes. Such a
build commits what came before it and may fail half-way (leaving an invalid
index), so every step here may run again: the table and its index ``IF NOT
EXISTS``, the scopes by their old value, each index dropped before it is built.

Revision ID: 0018
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every scope as 0015 left the list, and with the new one (shared/domain/scopes.py's order).
OLD_SCOPES = (
    "payment_intents:read payment_intents:write refunds:read refunds:write"
    " events:read events:write webhook_endpoints:read webhook_endpoints:write"
    " balance:read reports:read"
)
NEW_SCOPES = OLD_SCOPES + " customers:write"

INDEXES = {
    "ix_intents_card_purge": (
        "payment_intents (finalized_at)"
        " WHERE card_token IS NOT NULL AND status IN ('succeeded', 'failed', 'canceled')"
    ),
    "ix_intents_merchant_customer": (
        "payment_intents (merchant_id, customer) WHERE customer IS NOT NULL"
    ),
    "ix_events_created": "events (created_at)",
    "ix_attempts_created": "webhook_attempts (created_at)",
}


ERASURES_SQL = """
CREATE TABLE IF NOT EXISTS customer_erasures (
    id varchar(40) PRIMARY KEY,
    merchant_id varchar(40) NOT NULL,
    customer_hash varchar(64) NOT NULL,
    intents_erased integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS uq_customer_erasures
    ON customer_erasures (merchant_id, customer_hash);
"""


def upgrade() -> None:
    op.execute(ERASURES_SQL)
    op.alter_column("api_clients", "scopes", server_default=NEW_SCOPES)
    op.execute(
        sa.text("UPDATE api_clients SET scopes = :new WHERE scopes = :old").bindparams(
            new=NEW_SCOPES, old=OLD_SCOPES
        )
    )
    with op.get_context().autocommit_block():
        for name, target in INDEXES.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {target}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute(
        sa.text("UPDATE api_clients SET scopes = :old WHERE scopes = :new").bindparams(
            new=NEW_SCOPES, old=OLD_SCOPES
        )
    )
    op.alter_column("api_clients", "scopes", server_default=OLD_SCOPES)
    op.drop_table("customer_erasures")
