"""The indexes the limit-counter and refresh-token retention jobs walk.

- ``ix_limit_counters_window``: the last day of a counter's window, read from
  its key (the expression of ``shared/services/retention.py`` COUNTER_WINDOW_END,
  copied here as it was when this ran: a migration must not change later);
- ``ix_refresh_tokens_dead``: when a token stopped being usable (expired or
  revoked, whichever came first).

Built ``CONCURRENTLY``, as 0018's: both tables are written on the hot path
(every limits batch, every token refresh). Each index is dropped before it is
built, so a build that failed half-way (an invalid index) is redone.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_limit_counters_window": (
        "limit_counters (("
        "(CASE WHEN substr(key, length(key) - 12, 3) = ':d:' THEN right(key, 10)"
        " WHEN substr(key, length(key) - 9, 3) = ':m:' THEN right(key, 7) || '-31'"
        ' END COLLATE "C")))'
    ),
    "ix_refresh_tokens_dead": "refresh_tokens ((LEAST(expires_at, revoked_at)))",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, target in INDEXES.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {target}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
