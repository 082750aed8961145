"""ledger_anchors: each daily seal's hash as sent to, and mined on, a public chain.

Anchors live in a table of their own rather than in new columns of
ledger_seals. A seal stays what 0010 made it, immutable from its INSERT, with
no exception in its trigger to get wrong; an anchor has a life of its own
(signed and recorded, resent, re-signed if its nonce was taken, mined) that
needs UPDATEs, and it may come long after its seal (the node was away).
Its own trigger lets a row change only until it is mined, and never its day
or the hash it carries; no row is ever deleted. The app role may UPDATE only
the columns that life moves (shared/db/roles.py). ``day`` names its seal
without a foreign key: a seal is never deleted anyway (0010), and a
reference would make ``TRUNCATE ledger_seals`` fail on it before the seal's
own trigger could refuse it.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_SQL = """
CREATE TABLE ledger_anchors (
    day date PRIMARY KEY,
    seal_hash varchar(64) NOT NULL,
    chain_id bigint NOT NULL,
    sender varchar(42) NOT NULL,
    nonce bigint NOT NULL,
    tx_hash varchar(66) NOT NULL UNIQUE,
    raw_tx bytea NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now(),
    block_number bigint,
    mined_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_ledger_anchors_unmined ON ledger_anchors (day) WHERE block_number IS NULL;
"""

FUNCTION_SQL = """
CREATE FUNCTION ledger_anchor_guard() RETURNS trigger AS $$
BEGIN
    -- Mined is final: the anchor is then the chain's record, not ours to change.
    IF TG_OP <> 'UPDATE' OR OLD.block_number IS NOT NULL
       OR NEW.day <> OLD.day OR NEW.seal_hash <> OLD.seal_hash
       OR NEW.chain_id <> OLD.chain_id OR NEW.sender <> OLD.sender THEN
        RAISE EXCEPTION 'ledger_anchors rows are immutable once mined: % refused', TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""


def upgrade() -> None:
    op.execute(TABLE_SQL)
    op.execute(FUNCTION_SQL)
    op.execute(
        "CREATE TRIGGER ledger_anchors_guard BEFORE UPDATE OR DELETE ON ledger_anchors"
        " FOR EACH ROW EXECUTE FUNCTION ledger_anchor_guard()"
    )
    op.execute(
        "CREATE TRIGGER ledger_anchors_no_truncate BEFORE TRUNCATE ON ledger_anchors"
        " FOR EACH STATEMENT EXECUTE FUNCTION ledger_anchor_guard()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE ledger_anchors")
    op.execute("DROP FUNCTION ledger_anchor_guard()")
