"""What the operator metrics read at every scrape: two partial indexes and beat_job_runs.

- ``ix_intents_processing_stage`` (stage, stage_changed_at) of processing intents: the
  oldest intent at each stage is one index descent. ``ix_intents_processing``
  (stage_changed_at alone) would be walked from the oldest row until one of the stage
  turns up, all of it for a stage with none.
- ``ix_intents_unsettled_age`` (priority, finalized_at) of succeeded, unsettled intents:
  the oldest per priority, without reading a day of economy intents.
- ``beat_job_runs``: the last successful run of each periodic job.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSETTLED = "status = 'succeeded' AND settlement_status = 'pending'"


def upgrade() -> None:
    op.create_index(
        "ix_intents_processing_stage",
        "payment_intents",
        ["stage", "stage_changed_at"],
        postgresql_where=sa.text("status = 'processing'"),
    )
    op.create_index(
        "ix_intents_unsettled_age",
        "payment_intents",
        ["priority", "finalized_at"],
        postgresql_where=sa.text(UNSETTLED),
    )
    op.create_table(
        "beat_job_runs",
        sa.Column("job", sa.String(64), primary_key=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("beat_job_runs")
    op.drop_index("ix_intents_unsettled_age", table_name="payment_intents")
    op.drop_index("ix_intents_processing_stage", table_name="payment_intents")
