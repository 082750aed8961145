"""Request bodies and helpers shared by the integration and e2e tests."""

from __future__ import annotations

import time

from sqlalchemy import select

APPROVE = "4242424242424242"
DECLINE = "4000000000000002"
INSUFFICIENT = "4000000000009995"
EXPIRED = "4000000000000069"
PROCESSING_ERROR = "4000000000000119"
FRAUD = "4100000000000019"
FINAL = {"succeeded", "failed", "canceled", "requires_capture"}
# What each sandbox test card ends as: (status, failure_code).
OUTCOMES = {
    APPROVE: ("succeeded", None),
    DECLINE: ("failed", "card_declined"),
    INSUFFICIENT: ("failed", "insufficient_funds"),
    EXPIRED: ("failed", "expired_card"),
    PROCESSING_ERROR: ("failed", "processing_error"),
    FRAUD: ("failed", "fraud_suspected"),
}


def card_body(number: str = APPROVE, amount: int = 1000, **extra) -> dict:
    body = {
        "amount": amount,
        "currency": "USD",
        "payment_method": {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        },
    }
    body.update(extra)
    return body


def wallet_body(wallet_id: str, amount: int = 1000, **extra) -> dict:
    return {
        "amount": amount,
        "currency": "USD",
        "payment_method": {"type": "wallet", "wallet_id": wallet_id},
        **extra,
    }


def access_token(base: str, merchant: dict, session=None) -> str:
    """Client-credentials token for a merchant from the API at ``base``."""
    import requests

    r = (session or requests).post(
        f"{base}/v1/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": merchant["client_id"],
            "client_secret": merchant["client_secret"],
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def random_visa(rng) -> str:
    """A Luhn-valid Visa number the sandbox approves (distinct payer each time)."""
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def wait_until_final(engine, ids, timeout: float = 30, final=FINAL) -> dict:
    """Poll Postgres until every intent is in a final status; return id -> row."""
    from shared.db.tables import payment_intents as pi

    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(pi).where(pi.c.id.in_(list(ids))))}
        pending = [i for i in ids if rows.get(i) is None or rows[i].status not in final]
        if not pending:
            return rows
        if time.monotonic() > deadline:
            states = {i: (rows[i].status, rows[i].stage) if i in rows else None for i in pending}
            raise AssertionError(f"{len(pending)} intents not final after {timeout}s: {states}")
        time.sleep(0.1)
