"""payment_intents gets a partial index of each merchant's successes, newest first.

Fraud scores a batch against the mean of the merchant's last 500 succeeded
intents (shared/services/stages/fraud.py ``_merchant_history``). Through
``ix_intents_merchant_created`` that walked back over every newer intent of
the merchant that had not succeeded (yet), checking each row's status in the
heap: behind a backlog of 50,000 of the merchant's intents still
``processing``, it was the query Postgres spent most time in while the
backlog drained. The partial index holds only successes, so the query reads
500 entries whatever the backlog.

Built ``CONCURRENTLY`` (payment_intents is the hottest table; a plain build
blocks its writes), after dropping what a failed build may have left.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_intents_merchant_succeeded"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY {NAME} ON payment_intents"
            " (merchant_id, currency, created_at) WHERE status = 'succeeded'"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
