"""``clearhouse bank account ...`` and ``merchant set-bank-account`` through the real CLI
process against real bank processes; ``bank_account`` payments through the API in-process.

A bad argument gives one line on stderr and a non-zero exit (2 for usage errors, 1 for
errors of the command) and changes nothing; a bad payment method is a problem+json 400
that stores nothing.
"""

from __future__ import annotations

import shlex

import pytest
from sqlalchemy import func, select

from intake.app import create_app
from shared.db.tables import audit_log, merchants
from shared.db.tables import payment_intents as pi
from shared.security.signing import SigningKeys
from tests.support.apiclient import OwnAddressClient, bearer
from tests.support.banks import BankPair
from tests.support.clirun import cli, ok_json, refused

pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings, engine, vault):
    keys = SigningKeys.from_settings(settings)
    app = create_app(settings, engine=engine, dispatch=lambda *a, **k: None, keys=keys, vault=vault)
    return OwnAddressClient(app)


@pytest.fixture
def banks(tmp_path):
    pair = BankPair(tmp_path)
    pair.start("bank_a")
    pair.start("bank_b")
    yield pair
    pair.stop_all()


def _json(banks, command: str) -> dict:
    return ok_json(*shlex.split(command), env=banks.env)


def _refused(banks, status: int, command: str, says: str) -> None:
    refused(status, *shlex.split(command), says=says, env=banks.env)


def test_bank_accounts_are_created_funded_shown_and_named_by_merchants(
    banks, make_merchant, engine
):
    made = _json(banks, "bank account create --bank bank_a --owner ada --currency usd")
    account = made["account"]
    assert made == {
        "bank": "bank_a",
        "account": account,
        "owner": "ada",
        "currency": "USD",
        "balance": 0,
        "reserved": 0,
    }
    funded = _json(banks, f"bank account fund --bank bank_a --account {account} --amount 2500")
    assert funded["balance"] == 2500
    shown = _json(banks, f"bank account show --bank bank_a --account {account}")
    assert (shown["balance"], shown["reserved"]) == (2500, 0)
    plain = cli("bank", "account", "show", "--bank", "bank_a", "--account", account, env=banks.env)
    assert "balance: 2500" in plain.stdout.splitlines()
    # Each bank keeps its own books: bank_b has no such account.
    _refused(
        banks, 1, f"bank account show --bank bank_b --account {account}", says="has no account"
    )
    _refused(
        banks,
        1,
        f"bank account show --bank bank_z --account {account}",
        says="unknown bank 'bank_z'",
    )
    _refused(
        banks,
        2,
        f"bank account fund --bank bank_a --account {account} --amount -5",
        says="must be positive",
    )
    assert banks.account("bank_a", account)["balance"] == 2500

    merchant = make_merchant()["merchant_id"]
    shop = _json(banks, "bank account create --bank bank_b --owner shop --currency USD")["account"]
    named = _json(
        banks, f"merchant set-bank-account --merchant {merchant} --bank bank_b --account {shop}"
    )
    assert named == {"merchant_id": merchant, "bank": "bank_b", "account": shop}
    with engine.connect() as conn:
        row = conn.execute(select(merchants).where(merchants.c.id == merchant)).one()
        audits = conn.execute(
            select(func.count()).where(
                audit_log.c.action == "merchant.set_bank_account", audit_log.c.target == merchant
            )
        ).scalar_one()
    assert (row.settlement_bank, row.settlement_bank_account, audits) == ("bank_b", shop, 1)
    # An account the bank does not have is refused, and the merchant keeps its own.
    _refused(
        banks,
        1,
        f"merchant set-bank-account --merchant {merchant} --bank bank_a --account {shop}",
        says="has no account",
    )
    _refused(
        banks,
        1,
        f"merchant set-bank-account --merchant mch_nobody --bank bank_b --account {shop}",
        says="mch_nobody",
    )
    with engine.connect() as conn:
        row = conn.execute(select(merchants).where(merchants.c.id == merchant)).one()
    assert (row.settlement_bank, row.settlement_bank_account) == ("bank_b", shop)


@pytest.mark.parametrize(
    ("method", "param"),
    [
        ({"type": "bank_account", "bank": "Bank A", "account": "acc_01"}, "payment_method[bank]"),
        ({"type": "bank_account", "bank": "bank_a"}, "payment_method[account]"),
        ({"type": "bank_account", "bank": "bank_q", "account": "acc_01"}, "payment_method[bank]"),
        ({"type": "bank_account", "bank": "bank_a", "account": "nope"}, "payment_method[account]"),
        (
            {"type": "bank_account", "bank": "bank_a", "account": "acc_01", "iban": "x"},
            "payment_method[iban]",
        ),
    ],
)
def test_a_bad_bank_account_is_a_problem_and_stores_nothing(
    client, engine, make_merchant, method, param
):
    merchant = make_merchant()
    resp = client.simulate_post(
        "/v1/payment_intents",
        json={"amount": 1000, "currency": "USD", "payment_method": method},
        headers=bearer(client, merchant),
    )
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json["param"] == param
    with engine.connect() as conn:
        stored = conn.execute(
            select(func.count()).where(pi.c.merchant_id == merchant["merchant_id"])
        ).scalar_one()
    assert stored == 0


def test_a_bank_account_payment_is_accepted_and_shown_without_manual_capture(client, make_merchant):
    auth = bearer(client, make_merchant())
    method = {"type": "bank_account", "bank": "bank_a", "account": "acc_0a1b"}
    made = client.simulate_post(
        "/v1/payment_intents",
        json={"amount": 700, "currency": "USD", "payment_method": method},
        headers=auth,
    )
    assert made.status_code == 202, made.text
    assert made.json["payment_method"] == method
    assert (
        client.simulate_get(f"/v1/payment_intents/{made.json['id']}", headers=auth).json[
            "payment_method"
        ]
        == method
    )
    manual = client.simulate_post(
        "/v1/payment_intents",
        json={
            "amount": 700,
            "currency": "USD",
            "payment_method": method,
            "capture_method": "manual",
        },
        headers=auth,
    )
    assert (manual.status_code, manual.json["param"]) == (400, "capture_method")
    # The OpenAPI document describes the method, its shape checked as the API checks it.
    schemas = client.simulate_get("/openapi.json").json["components"]["schemas"]
    described = schemas["BankAccountMethod"]
    assert described["required"] == ["type", "bank", "account"]
    assert described["properties"]["account"]["pattern"] == "^acc_[0-9a-f]{1,60}$"
    assert "BankAccountOut" in schemas
