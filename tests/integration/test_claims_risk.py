"""Fraud signals come from the database; limits hold under 100 concurrent intents.

Fraud: the session's real worker scores intents whose history (velocity
windows, blocklist, the merchant's threshold) is in Postgres. Each test pays
from an IP address of its own, so no other test's intents count.

Limits: 100 transactions run the limits stage at once on a private Postgres
(its own max_connections, so all 100 really are concurrent), against a payer
daily and a merchant monthly limit set with the CLI.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from sqlalchemy import create_engine, select, text

from shared.db.roles import APP
from shared.db.tables import limit_counters
from shared.db.tables import payment_intents as pi
from tests import factories as f
from tests.conftest import python_bin
from tests.support.processes import ROOT
from tests.support.services import PrivatePostgres

pytestmark = pytest.mark.integration


def _create(engine, vault, merchant_id: str, body: dict, ip: str) -> str:
    from shared.db.uow import UnitOfWork
    from shared.domain.validation import validate_create
    from shared.services import intents

    req = validate_create(body, date.today())
    with UnitOfWork(engine) as u:
        row = intents.create(u, vault, merchant_id, req, client_ip=ip, request_id=None)
        u.commit()
    return row.id


@pytest.fixture
def pay(engine, vault):
    """Factory: an intent of ``merchant_id`` from this test's own IP; the relay sends it on."""
    ip = f"2001:db8:{secrets.token_hex(2)}::{secrets.token_hex(2)}"

    def pay(merchant_id: str, body: dict, ip: str = ip) -> str:
        return _create(engine, vault, merchant_id, body, ip)

    pay.ip = ip
    return pay


def _reasons(row) -> dict[str, int]:
    return {r["code"]: r["points"] for r in row.risk_reasons or []}


def _final(engine, intent_id):
    return f.wait_until_final(engine, [intent_id])[intent_id]


def test_card_velocity_counts_the_cards_intents_of_the_last_ten_minutes(
    worker, make_merchant, pay, engine
):
    merchant = make_merchant()["merchant_id"]
    card = f.random_visa(random.Random())
    earlier = [pay(merchant, f.card_body(card, 500)) for _ in range(6)]
    rows = f.wait_until_final(engine, earlier)
    assert {r.status for r in rows.values()} == {"succeeded"}
    assert not any("card_velocity" in _reasons(r) for r in rows.values())

    seventh = _final(engine, pay(merchant, f.card_body(card, 500)))
    assert _reasons(seventh) == {"card_velocity": 30}  # 6 others: more than 5
    assert (seventh.risk_score, seventh.status) == (30, "succeeded")  # below 75

    # The same seven, eleven minutes ago: out of the window, they no longer count.
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE payment_intents SET created_at = created_at - interval '11 minutes'"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": [*earlier, seventh.id]},
        )
    later = _final(engine, pay(merchant, f.card_body(card, 500)))
    assert (_reasons(later), later.risk_score, later.status) == ({}, 0, "succeeded")


def test_ip_velocity_counts_the_ips_recent_intents(worker, make_merchant, pay, engine):
    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    earlier = [pay(merchant, f.card_body(f.random_visa(rng), 500)) for _ in range(21)]
    rows = f.wait_until_final(engine, earlier)
    assert {r.status for r in rows.values()} == {"succeeded"}
    assert not any("ip_velocity" in _reasons(r) for r in rows.values())

    crowded = _final(engine, pay(merchant, f.card_body(f.random_visa(rng), 500)))
    assert _reasons(crowded) == {"ip_velocity": 25}  # 21 others: more than 20
    other_ip = f"2001:db8:{secrets.token_hex(2)}::{secrets.token_hex(2)}"
    elsewhere = pay(merchant, f.card_body(f.random_visa(rng), 500), ip=other_ip)
    assert _reasons(_final(engine, elsewhere)) == {}


@pytest.mark.parametrize("kind", ["card_fingerprint", "ip", "customer", "wallet"])
def test_a_blocklisted_payer_is_blocked(
    kind, worker, make_merchant, pay, funded_wallet, engine, vault
):
    from shared.db.uow import UnitOfWork
    from shared.services import merchants
    from shared.services.audit import Actor

    merchant = make_merchant()["merchant_id"]
    card = f.random_visa(random.Random())
    customer = f"cus_{secrets.token_hex(6)}"
    wallet = funded_wallet(10_000) if kind == "wallet" else None

    def body():
        if wallet:
            return f.wallet_body(wallet, 1000)
        return f.card_body(card, 1000, customer=customer)

    value = {
        "card_fingerprint": vault.fingerprint(card),
        "ip": pay.ip,
        "customer": customer,
        "wallet": wallet,
    }[kind]
    before = _final(engine, pay(merchant, body()))
    assert (before.status, _reasons(before)) == ("succeeded", {})
    with UnitOfWork(engine) as u:
        merchants.block(u, kind, value, "test", actor=Actor("test:fixture"))
        u.commit()
    after = _final(engine, pay(merchant, body()))
    assert (after.status, after.failure_code) == ("failed", "fraud_suspected")
    assert _reasons(after) == {"blocklisted": 100} and after.risk_score == 100
    (reason,) = after.risk_reasons
    assert reason["detail"] == f"blocklist match: {kind}"


def test_the_block_threshold_is_the_merchants_own(worker, make_merchant, pay, engine):
    from shared.db.uow import UnitOfWork
    from shared.services import merchants

    rng = random.Random()
    strict, at_16, default = (make_merchant()["merchant_id"] for _ in range(3))
    with UnitOfWork(engine) as u:
        merchants.set_fraud_threshold(u, strict, 15)
        merchants.set_fraud_threshold(u, at_16, 16)
        u.commit()
    # A new payer's USD 1,000.00 scores 15 (first_time_large_amount) everywhere.
    ids = {m: pay(m, f.card_body(f.random_visa(rng), 100_000)) for m in (strict, at_16, default)}
    rows = f.wait_until_final(engine, list(ids.values()))
    got = {m: rows[i] for m, i in ids.items()}
    assert {m: _reasons(r) for m, r in got.items()} == dict.fromkeys(
        ids, {"first_time_large_amount": 15}
    )
    assert (got[strict].status, got[strict].failure_code) == ("failed", "fraud_suspected")
    assert got[at_16].status == got[default].status == "succeeded"


# --- limits under concurrency ---------------------------------------------------------

CONCURRENT = 100
AMOUNT = 1000
FITS = 10  # the limit holds exactly this many intents


@pytest.fixture(scope="module")
def private_pg():
    from shared.db.migrate import upgrade

    pg = PrivatePostgres()  # max_connections=200
    try:
        pg.init()
        pg.start()
        upgrade(pg.url())
        # One connection per racing transaction, all open at once.
        # As the services connect: the app role.
        engine = create_engine(pg.url(user=APP), pool_size=CONCURRENT + 5, max_overflow=0)
        yield pg, engine
        engine.dispose()
    finally:
        pg.destroy()


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python_bin("clearhouse"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("scope", "period"),
    [("payer", "daily"), ("merchant", "monthly")],
    ids=["payer-daily", "merchant-monthly"],
)
def test_a_hundred_concurrent_intents_never_overshoot_a_limit(scope, period, private_pg, vault):
    from shared.db.uow import UnitOfWork
    from shared.services.stages import limits

    pg, engine = private_pg
    made = _cli(pg.url(user=APP), "merchant", "create", "--name", f"limits {scope}", "--json")
    assert made.returncode == 0, made.stderr
    merchant = json.loads(made.stdout)["merchant_id"]
    limit = FITS * AMOUNT
    out = _cli(
        pg.url(user=APP), "merchant", "set-limits", "--merchant", merchant, "--currency", "usd",
        "--scope", scope, f"--{period}", str(limit),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr

    rng = random.Random()
    card = f.random_visa(rng)  # the payer limit: one card; the merchant limit: many
    ids = [
        _create(
            engine,
            vault,
            merchant,
            f.card_body(card if scope == "payer" else f.random_visa(rng), AMOUNT),
            "192.0.2.10",
        )
        for _ in range(CONCURRENT)
    ]
    start = threading.Barrier(CONCURRENT)

    def limits_stage(intent_id: str):
        with UnitOfWork(engine) as u:
            u.conn.execute(text("SELECT 1"))  # the connection is open before the race starts
            start.wait(timeout=60)
            result = limits.run(u, [intent_id])
            u.commit()
        return result

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(limits_stage, ids))
    assert sum(len(r.advanced) for r in results) == FITS
    assert sum(len(r.failed) for r in results) == CONCURRENT - FITS
    with engine.connect() as conn:
        rows = conn.execute(select(pi).where(pi.c.id.in_(ids))).all()
        counters = dict(
            conn.execute(
                select(limit_counters.c.key, limit_counters.c.used).where(
                    limit_counters.c.key.like(f"%{merchant}%")
                )
            ).all()
        )
    failed = [r for r in rows if r.status == "failed"]
    assert {(r.failure_code, r.failure_message) for r in failed} == {
        ("limit_exceeded", f"The payment exceeds the {scope} {period} limit.")
    }
    assert sum(r.limit_reserved for r in rows) == limit
    prefix = "p:" if scope == "payer" else "m:"
    tag = ":d:" if period == "daily" else ":m:"
    (used,) = [v for k, v in counters.items() if k.startswith(prefix) and tag in k]
    assert used == limit  # reserved exactly up to the limit, never past it
