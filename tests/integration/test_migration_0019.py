"""Migration 0019 (bank payments) on a database with payments: up, down and up again.

Intents and merchants written at 0018 keep their rows; the new columns are empty,
the decision log exists (granted to the app role, which may write it), and going
back to 0018 removes exactly what 0019 added.
"""

from __future__ import annotations

import os
import secrets

import pytest
from sqlalchemy import create_engine, inspect, text

from shared.db.migrate import current_revision, downgrade, drop_database, upgrade
from tests.support.scratchdb import admin_url

pytestmark = pytest.mark.integration


def test_0019_adds_the_bank_columns_and_the_decision_log_and_goes_back_cleanly():
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/clearhouse_m19_{secrets.token_hex(4)}"
    upgrade(admin_url(url), "0018")
    admin, app = create_engine(admin_url(url)), create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text("INSERT INTO merchants (id, name) VALUES ('mch_m19', 'Old shop')"))
        upgrade(admin_url(url), "0019")
        assert current_revision(admin_url(url)) == "0019"
        columns = {c["name"] for c in inspect(app).get_columns("merchants")}
        assert {"settlement_bank", "settlement_bank_account"} <= columns
        assert {"bank", "bank_account"} <= {
            c["name"] for c in inspect(app).get_columns("payment_intents")
        }
        with app.begin() as conn:  # the app role writes the log
            conn.execute(
                text(
                    "INSERT INTO bank_transactions (id, intent_id, kind, currency, participants)"
                    " VALUES ('btx_m19', 'pi_m19', 'payment', 'USD', '[]')"
                )
            )
            old = conn.execute(
                text("SELECT name, settlement_bank FROM merchants WHERE id = 'mch_m19'")
            ).one()
        assert tuple(old) == ("Old shop", None)
        refused = pytest.raises(Exception, match="bank_transactions_decision")
        with refused, app.begin() as conn:
            conn.execute(text("UPDATE bank_transactions SET decision = 'maybe'"))
        downgrade(admin_url(url), "0018")
        app.dispose()
        assert "bank_transactions" not in inspect(app).get_table_names()
        assert "settlement_bank" not in {c["name"] for c in inspect(app).get_columns("merchants")}
        upgrade(admin_url(url), "0019")
        assert current_revision(admin_url(url)) == "0019"
    finally:
        app.dispose()
        admin.dispose()
        drop_database(admin_url(url))
