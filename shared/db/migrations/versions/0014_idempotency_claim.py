"""``idempotency_claim``: take an Idempotency-Key's lock and read its row in one round trip.

The lock and the read must stay two statements (shared/services/idempotency.py:
in READ COMMITTED a statement's snapshot is taken before its lock is); inside a
VOLATILE function each statement takes a fresh snapshot, so the read still sees
everything committed before the lock was granted, and the API saves a round trip
per keyed request. The lock's name is the one the API used before
(``hashtextextended(merchant || ':' || key, 0)``), so old and new processes exclude
each other during a rolling deploy.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION idempotency_claim(p_merchant text, p_key text, p_retention interval)
RETURNS TABLE (locked boolean, found boolean, stale boolean, request_method text,
               request_path text, request_hash text, response_status integer,
               response_body jsonb)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended(p_merchant || ':' || p_key, 0)) THEN
        RETURN QUERY SELECT false, false, false, NULL::text, NULL::text, NULL::text,
                            NULL::integer, NULL::jsonb;
        RETURN;
    END IF;
    -- A statement of its own, so a snapshot taken after the lock was granted.
    RETURN QUERY
        SELECT true, true, k.created_at < now() - p_retention, k.request_method::text,
               k.request_path, k.request_hash::text, k.response_status, k.response_body
        FROM idempotency_keys k
        WHERE k.merchant_id = p_merchant AND k.key = p_key;
    IF NOT FOUND THEN
        RETURN QUERY SELECT true, false, false, NULL::text, NULL::text, NULL::text,
                            NULL::integer, NULL::jsonb;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(FUNCTION_SQL)


def downgrade() -> None:
    op.execute("DROP FUNCTION idempotency_claim(text, text, interval)")
