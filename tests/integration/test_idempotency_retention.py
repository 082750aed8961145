"""Idempotency keys are kept at least 24 h, whatever IDEMPOTENCY_RETENTION_H says.

The API's lookup and the prune job both read the setting, so the floor must
hold where the setting is read: with a lower value an old key would be
treated as absent and the same request would create a second payment.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text, update

from intake.app import create_app
from shared.config import Settings
from shared.db.tables import idempotency_keys, payment_intents
from shared.db.uow import UnitOfWork
from shared.services import retention
from shared.services.merchants import create_merchant
from tests.support.apiclient import OwnAddressClient, bearer
from tests.support.units import bound

pytestmark = pytest.mark.integration

BODY = {
    "amount": 1234,
    "currency": "USD",
    "payment_method": {
        "type": "card",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
    },
}


@pytest.fixture
def low_retention(monkeypatch, database) -> Settings:
    # As an operator would set it: through the environment.
    monkeypatch.setenv("IDEMPOTENCY_RETENTION_H", "1")
    return Settings.from_env(database_url=database)


@pytest.fixture
def client(low_retention, engine, vault):
    app = create_app(
        low_retention, engine=engine, dispatch=lambda step, ids, countdown=None: None, vault=vault
    )
    return OwnAddressClient(app)


@pytest.fixture
def merchant(engine, vault) -> dict:
    with UnitOfWork(engine) as uow:
        m = create_merchant(uow, vault, f"retention-{uuid.uuid4().hex[:8]}")
        uow.commit()
    return m


@pytest.fixture
def auth(client, merchant) -> dict:
    return bearer(client, merchant)


def _backdate_keys(engine, merchant_id: str, hours: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.merchant_id == merchant_id)
            .values(created_at=func.now() - text(f"interval '{int(hours)} hours'"))
        )


def _intents(engine, merchant_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(payment_intents.c.merchant_id == merchant_id)
        ).scalar_one()


def test_a_two_hour_old_key_replays_with_retention_set_to_one_hour(
    client, auth, merchant, engine, low_retention
):
    key = uuid.uuid4().hex
    headers = {**auth, "Idempotency-Key": key}
    first = client.simulate_post("/v1/payment_intents", json=BODY, headers=headers)
    assert first.status_code == 202, first.text
    _backdate_keys(engine, merchant["merchant_id"], hours=2)

    again = client.simulate_post("/v1/payment_intents", json=BODY, headers=headers)
    assert again.status_code == 202, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json["id"] == first.json["id"]
    # Still the first request's key: another body is refused, not a new payment.
    other = client.simulate_post(
        "/v1/payment_intents", json={**BODY, "amount": 999}, headers=headers
    )
    assert other.status_code == 422 and other.json["code"] == "idempotency_key_reused"
    assert _intents(engine, merchant["merchant_id"]) == 1


def test_prune_keeps_a_two_hour_old_key_with_retention_set_to_one_hour(
    client, auth, merchant, engine, low_retention
):
    key = uuid.uuid4().hex
    resp = client.simulate_post(
        "/v1/payment_intents", json=BODY, headers={**auth, "Idempotency-Key": key}
    )
    assert resp.status_code == 202, resp.text
    _backdate_keys(engine, merchant["merchant_id"], hours=2)
    with engine.begin() as conn:
        retention.prune_idempotency_keys(bound(conn), low_retention.idempotency_retention_h, 10**6)
        left = conn.execute(
            select(func.count()).where(
                idempotency_keys.c.merchant_id == merchant["merchant_id"],
                idempotency_keys.c.key == key,
            )
        ).scalar_one()
    assert left == 1
    # Past the 24 h floor it goes.
    _backdate_keys(engine, merchant["merchant_id"], hours=25)
    with engine.begin() as conn:
        assert (
            retention.prune_idempotency_keys(
                bound(conn), low_retention.idempotency_retention_h, 10**6
            )
            >= 1
        )
