"""The risk level on each intent: ``payment_intents.risk_level``.

The fraud stage records where the score fell against the merchant's
thresholds at the time: ``normal``, ``elevated`` (the review band: a review
was opened and the payment went on) or ``highest`` (blocked). It is stored
rather than derived because the thresholds may change afterwards. Intents
scored before this revision keep NULL (no review was ever opened for them).

Revision ID: 0016
Revises: 0014 (0015 is another branch's; the lead chains them on merge)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: no table rewrite, only a catalog change.
    op.add_column("payment_intents", sa.Column("risk_level", sa.String(16)))
    # NOT VALID: existing rows are all NULL, so skipping their scan loses nothing.
    op.execute(
        "ALTER TABLE payment_intents ADD CONSTRAINT payment_intents_risk_level"
        " CHECK (risk_level IN ('normal', 'elevated', 'highest')) NOT VALID"
    )


def downgrade() -> None:
    op.drop_constraint("payment_intents_risk_level", "payment_intents")
    op.drop_column("payment_intents", "risk_level")
