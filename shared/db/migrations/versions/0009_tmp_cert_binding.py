"""TEMPORARY, to be dropped at merge: ``api_clients.cert_sha256`` for certificate binding.

The real column comes with the OAuth lifecycle work (its own 0009, with
``clearhouse client create --cert-sha256``). This stand-in adds only that one
nullable column (a certificate's SHA-256, hex; NULL: the client is not bound),
so that the TLS binding can be built and tested before that lands.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_clients", sa.Column("cert_sha256", sa.Text()))


def downgrade() -> None:
    op.drop_column("api_clients", "cert_sha256")
