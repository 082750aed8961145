"""Fraud's merchant mean reads the merchant's successes only, however many are still processing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from shared.services.stages import fraud

pytestmark = pytest.mark.integration

INTENTS = """INSERT INTO payment_intents (id, merchant_id, amount, currency, status, stage,
    capture_method, priority, pm_type, payer_key, created_at)
    SELECT 'pi_idx_' || g, 'mch_idx', 1000 + g, 'USD', :status, 'received', 'automatic',
        'economy', 'card', 'payer_' || g, now() - interval '1 hour' + g * interval '1 ms'
    FROM generate_series(:lo, :hi) g"""


@pytest.fixture
def scratch():
    from tests.support.scratchdb import admin_url, scratch_database

    with scratch_database("clearhouse_fraud_idx") as (url, engine):
        admin = create_engine(admin_url(url))
        try:
            yield engine, admin
        finally:
            admin.dispose()


def test_the_merchant_mean_reads_500_successes_behind_any_backlog(scratch):
    engine, admin = scratch
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO merchants (id, name, webhook_secret_enc) VALUES ('mch_idx', 'x', 'x')"
            )
        )
        # 600 successes, then 20,000 newer intents still processing (a backlog).
        c.execute(text(INTENTS), {"status": "succeeded", "lo": 1, "hi": 600})
        c.execute(text(INTENTS), {"status": "processing", "lo": 601, "hi": 20_600})
    with admin.connect() as c:
        c.execute(text("ANALYZE payment_intents"))
        c.commit()
    with engine.connect() as c:
        plan = c.execute(
            text(f"EXPLAIN (ANALYZE, FORMAT JSON) {fraud.MERCHANT_MEAN}"),
            {"m": "mch_idx", "c": "USD"},
        ).scalar()
        mean = c.execute(text(fraud.MERCHANT_MEAN), {"m": "mch_idx", "c": "USD"}).scalar()
    plan = json.dumps(plan)
    assert mean == 1351  # the newest 500 successes, amounts 1101..1600: 1350.5, rounded
    assert "ix_intents_merchant_succeeded" in plan
    assert '"Rows Removed by Filter"' not in plan
