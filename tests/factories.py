"""Request bodies and helpers shared by the integration and e2e tests."""

from __future__ import annotations

import itertools
import os
import time

from sqlalchemy import select

APPROVE = "4242424242424242"
DECLINE = "4000000000000002"
INSUFFICIENT = "4000000000009995"
EXPIRED = "4000000000000069"
PROCESSING_ERROR = "4000000000000119"
FRAUD = "4100000000000019"
HIGHEST_RISK = "4000000000004954"
ELEVATED_RISK = "4000000000009235"
SPECIAL_CARDS = frozenset(
    {APPROVE, DECLINE, INSUFFICIENT, EXPIRED, PROCESSING_ERROR, FRAUD, HIGHEST_RISK, ELEVATED_RISK}
)
FINAL = {"succeeded", "failed", "canceled", "requires_capture"}
# What each sandbox test card ends as: (status, failure_code).
OUTCOMES = {
    APPROVE: ("succeeded", None),
    DECLINE: ("failed", "card_declined"),
    INSUFFICIENT: ("failed", "insufficient_funds"),
    EXPIRED: ("failed", "expired_card"),
    PROCESSING_ERROR: ("failed", "processing_error"),
    FRAUD: ("failed", "fraud_suspected"),
    HIGHEST_RISK: ("failed", "fraud_suspected"),
    ELEVATED_RISK: ("succeeded", None),  # with a review opened
}


# --- payers, cards and client addresses of their own --------------------------
#
# Fraud scoring counts across the whole database: velocity per card fingerprint
# and per client IP, amounts against the payer's (card's or wallet's) history.
# A card or an IP shared by several tests carries one test's history into the
# next one's score, so each call below hands out one nobody else in this test
# process has used. The xdist worker's number is part of every value, so two
# workers never hand out the same one either (their databases differ anyway).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_W = int(_WORKER[2:] or 0) % 100 if _WORKER.startswith("gw") else 0
_cards = itertools.count(1)
_ips = itertools.count(0)


def _luhn_complete(digits: list[int]) -> str:
    """``digits`` and the Luhn check digit that makes the number valid."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def new_card() -> str:
    """A Luhn-valid Visa number the sandbox approves, never handed out before.

    ``49`` + worker (2 digits) + counter (11 digits) + check digit: none of the
    sandbox's special numbers (they start 40, 41 or 42) can come out.
    """
    number = _luhn_complete([4, 9, *map(int, f"{_W:02d}{next(_cards):011d}")])
    assert number not in SPECIAL_CARDS
    return number


def new_ip(loopback: bool = False) -> str:
    """A client IPv4 address never handed out before in this test process.

    ``10.<worker>.x.y`` for intents created in-process; with ``loopback``,
    ``127.<worker + 1>.x.y``: a local address an HTTP client can bind as its
    source (Linux routes all of 127/8 to lo), so the API sees it as the
    client's address (e2e tests, where every client is otherwise 127.0.0.1).
    """
    n = next(_ips)
    hi, lo = divmod(n, 254)
    assert hi < 256, "out of addresses"
    return f"127.{_W + 1}.{hi}.{lo + 1}" if loopback else f"10.{_W}.{hi}.{lo + 1}"


def card_body(number: str | None = None, amount: int = 1000, **extra) -> dict:
    """A card intent body; without ``number``, a card of its own (new_card())."""
    number = number or new_card()
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


def client_credentials(merchant: dict) -> dict:
    """The token request body of a merchant's client (the client_credentials grant)."""
    return {
        "grant_type": "client_credentials",
        "client_id": merchant["client_id"],
        "client_secret": merchant["client_secret"],
    }


def access_token(base: str, merchant: dict, session=None) -> str:
    """Client-credentials token for a merchant from the API at ``base``."""
    import requests

    r = (session or requests).post(
        f"{base}/v1/oauth/token", json=client_credentials(merchant), timeout=10
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def random_visa(rng) -> str:
    """A Luhn-valid Visa number the sandbox approves (distinct payer each time).

    For load generators that draw from a seeded ``rng``; tests use new_card().
    """
    return _luhn_complete([4] + [rng.randrange(10) for _ in range(14)])


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
        time.sleep(0.1)  # polling interval
