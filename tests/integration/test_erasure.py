"""Erasure on request, from the HTTP API and the CLI down to a dump of the whole database.

The intents go through the real relay, worker and webhook sender (to a
receiver that echoes what it gets, as some do, so the stored answers hold the
customer's data too). After the erasure, a ``pg_dump`` of the layer's
database holds none of the customer's values anywhere, while ids, amounts,
statuses, the ledger, a report and ``ledger verify`` are as before.
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import secrets
import subprocess
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from intake.app import create_app
from shared.db.tables import audit_log, daily_reports, events, ledger_transfers, payment_intents
from shared.db.uow import UnitOfWork
from shared.domain.scopes import ALL_SCOPES
from shared.observability.logging import JsonFormatter
from shared.services import clients, ledger_verify, reports
from tests import factories as f
from tests.conftest import TEST_ENV, free_port, python_bin
from tests.support.apiclient import OwnAddressClient, bearer
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def app(settings, engine, vault):
    from workers.celery_app import publish

    return create_app(settings, engine=engine, dispatch=publish, vault=vault)


def _dump() -> str:
    """Every row of the layer's database, as ``pg_dump`` writes it (data only)."""
    url = TEST_ENV["MIGRATION_DATABASE_URL"].replace("+psycopg2", "")
    out = subprocess.run(
        ["pg_dump", "--data-only", "--dbname", url], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _found(dump: str, values: dict[str, str]) -> dict[str, int]:
    """How often each value appears in the dump, as a whole token (10.0.0.1 is not 10.0.0.12)."""
    return {
        name: len(re.findall(rf"(?<![\w.]){re.escape(v)}(?![\w])", dump))
        for name, v in values.items()
    }


def _report(engine, merchant_id: str) -> list:
    with UnitOfWork(engine) as u:  # rolled back: a report of a day still running
        reports.run_daily(u, datetime.now(UTC).date())
        rows = u.conn.execute(
            select(daily_reports).where(daily_reports.c.merchant_id == merchant_id)
        ).all()
        problems = ledger_verify.verify(u).problems
    return [tuple(v for k, v in r._mapping.items() if k != "created_at") for r in rows], problems


def _books(engine, ids) -> list:
    """The intents' money, ids and statuses, and their ledger transfers."""
    cols = [payment_intents.c[c] for c in ("id", "status", "amount", "amount_received")]
    cols += [payment_intents.c[c] for c in ("amount_refunded", "fee_amount", "card_fingerprint")]
    with engine.connect() as conn:
        intents = conn.execute(select(*cols).where(payment_intents.c.id.in_(ids))).all()
        transfers = conn.execute(
            select(ledger_transfers)
            .where(ledger_transfers.c.intent_id.in_(ids))
            .order_by(ledger_transfers.c.id)
        ).all()
    return sorted(intents), transfers


def test_an_erased_customer_is_nowhere_in_the_database_but_its_books_are_unchanged(
    worker, app, engine, make_merchant, books_balance
):
    port = free_port()
    merchant = make_merchant(webhook_url=f"http://127.0.0.1:{port}/hooks")
    receiver = Receiver([merchant["webhook_secret"]], port).start()
    receiver.mode = "echo"
    mid = merchant["merchant_id"]
    shop = OwnAddressClient(app)  # the customer's checkout: its address is the intent's
    office = OwnAddressClient(app)  # the merchant's back office asks for the erasure
    auth = bearer(shop, merchant)
    tag = secrets.token_hex(6)
    secret = {
        "customer": f"cus_{tag}",
        "description": f"Order for Ada {tag}",
        "metadata": f"ada.{tag}@example.com",
        "refund_note": f"returned by Ada {tag}",
        "client_ip": shop.remote_addr,
    }
    paid_body = f.card_body(
        amount=2500,
        priority="instant",
        customer=secret["customer"],
        description=secret["description"],
        metadata={"email": secret["metadata"]},
    )
    try:
        paid = shop.simulate_post(
            "/v1/payment_intents",
            json=paid_body,
            headers={**auth, "Idempotency-Key": f"create-{tag}"},
        )
        held = shop.simulate_post(
            "/v1/payment_intents",
            json=f.card_body(amount=1800, capture_method="manual", customer=secret["customer"]),
            headers=auth,
        )
        # Another customer's, from another address: none of it is erased.
        other = OwnAddressClient(app).simulate_post(
            "/v1/payment_intents",
            json=f.card_body(amount=900, customer=f"cus_other_{tag}", description="kept"),
            headers=auth,
        )
        ids = [r.json["id"] for r in (paid, held, other)]
        rows = f.wait_until_final(engine, ids)
        assert rows[ids[1]].status == "requires_capture"
        captured = shop.simulate_post(
            f"/v1/payment_intents/{ids[1]}/capture",
            json={"amount_to_capture": 1000},
            headers={**auth, "Idempotency-Key": f"capture-{tag}"},
        )
        assert captured.status_code == 200, captured.text
        refund = shop.simulate_post(
            "/v1/refunds",
            json={
                "payment_intent": ids[0],
                "amount": 500,
                "metadata": {"note": secret["refund_note"]},
            },
            headers={**auth, "Idempotency-Key": f"refund-{tag}"},
        )
        assert refund.status_code == 200, refund.text
        # Every event of the two intents and the refund reached the receiver and
        # its echo is stored: the database holds each value several times over.
        # (All of them recorded first: an answer stored after the erasure by a
        # send already under way would hold the data it was sent.)
        wait_until(
            lambda: _all_delivered(engine, mid, at_least=8) and _attempts_echoing(engine, secret),
            timeout=30,
            what="the webhooks and their echoed answers",
        )
        before = _found(_dump(), secret)
        assert all(n > 0 for n in before.values()), before
        report, problems = _report(engine, mid)
        books = _books(engine, ids)
        other_before = shop.simulate_get(f"/v1/payment_intents/{ids[2]}", headers=auth).json

        erase_auth = bearer(office, merchant)
        key = {**erase_auth, "Idempotency-Key": f"erase-{tag}"}
        erased = office.simulate_post(f"/v1/customers/{secret['customer']}/erase", headers=key)
        assert erased.status_code == 200, erased.text
        body = erased.json
        assert body["object"] == "customer_erasure" and body["intents_erased"] == 2
        assert secret["customer"] not in erased.text

        # Nowhere in the database, outside the ids and amounts the ledger keeps.
        assert _found(_dump(), secret) == {name: 0 for name in secret}
        assert _report(engine, mid) == (report, problems) and problems == []
        assert _books(engine, ids) == books
        books_balance()

        # The intents read with the tombstone; the other customer's is untouched.
        for intent_id in ids[:2]:
            shown = shop.simulate_get(f"/v1/payment_intents/{intent_id}", headers=auth).json
            assert shown["customer"] == "[erased]" and shown["metadata"] == {}
        assert (
            shop.simulate_get(f"/v1/payment_intents/{ids[0]}", headers=auth).json["description"]
            == "[erased]"
        )
        assert shop.simulate_get(f"/v1/payment_intents/{ids[2]}", headers=auth).json == other_before
        # A stored response replays, erased, still valid JSON.
        replay = shop.simulate_post(
            "/v1/payment_intents",
            json=paid_body,
            headers={**auth, "Idempotency-Key": f"create-{tag}"},
        )
        assert replay.status_code == 202 and replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json["id"] == ids[0] and replay.json["customer"] == "[erased]"
        # One customer.erased event, to the webhook too; events list it.
        listed = shop.simulate_get(
            "/v1/events", params={"type": "customer.erased"}, headers=auth
        ).json["data"]
        assert [e["data"]["object"]["id"] for e in listed] == [body["id"]]
        receiver.wait_for(lambda r: body["id"] in _objects(r), timeout=30)

        # Again: the same erasure, no second event; the same key replays it.
        again = office.simulate_post(
            f"/v1/customers/{secret['customer']}/erase", headers=erase_auth
        )
        assert again.status_code == 200 and again.json == body
        replayed = office.simulate_post(f"/v1/customers/{secret['customer']}/erase", headers=key)
        assert replayed.headers.get("Idempotent-Replayed") == "true" and replayed.json == body
        assert _erased_events(engine, mid) == 1

        # Audited once: who, which erasure, what by counts, never a value.
        with engine.connect() as conn:
            (row,) = conn.execute(
                select(audit_log).where(
                    audit_log.c.action == "customer.erase", audit_log.c.target == body["id"]
                )
            ).all()
        assert row.actor == f"client:{merchant['client_id']}"
        assert row.after["intents"] == 2 and row.after["refunds"] == 1
        assert row.after["events"] >= 6 and row.after["idempotency_responses"] == 3
        assert row.after["webhook_answers"] >= 6
    finally:
        receiver.stop()


def _all_delivered(engine, merchant_id: str, at_least: int) -> bool:
    from shared.db.tables import webhook_deliveries as wd

    with engine.connect() as conn:
        made = conn.execute(
            select(func.count()).where(events.c.merchant_id == merchant_id)
        ).scalar()
        done = conn.execute(
            select(func.count()).where(wd.c.merchant_id == merchant_id, wd.c.status == "succeeded")
        ).scalar()
    return made >= at_least and done == made


def _attempts_echoing(engine, secret: dict) -> bool:
    from shared.db.tables import webhook_attempts

    with engine.connect() as conn:
        bodies = conn.execute(
            select(webhook_attempts.c.response_body).where(
                webhook_attempts.c.response_body.contains(secret["customer"])
            )
        ).scalars()
        return len(list(bodies)) >= 4


def _objects(receiver) -> set:
    return {r.event["data"]["object"].get("id") for r in receiver.received}


def _erased_events(engine, merchant_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(
                events.c.merchant_id == merchant_id, events.c.type == "customer.erased"
            )
        ).scalar()


def test_a_later_intent_of_an_erased_customer_is_erased_by_the_next_request(
    app, engine, make_merchant, submit
):
    merchant = make_merchant()
    client = OwnAddressClient(app)
    auth = bearer(client, merchant)
    customer = f"cus_{secrets.token_hex(6)}"
    path = f"/v1/customers/{customer}/erase"
    # A customer the merchant never sent: erased all the same (nothing to erase).
    first = client.simulate_post(path, headers=auth)
    assert first.status_code == 200 and first.json["intents_erased"] == 0
    later = submit(merchant["merchant_id"], f.card_body(customer=customer), enqueue=False)
    second = client.simulate_post(path, headers=auth)
    assert second.json["id"] == first.json["id"] and second.json["intents_erased"] == 1
    with engine.connect() as conn:
        row = conn.execute(select(payment_intents).where(payment_intents.c.id == later)).one()
    assert (row.customer, row.client_ip, row.metadata) == ("[erased]", None, {})
    assert _erased_events(engine, merchant["merchant_id"]) == 2


def test_erasure_needs_its_scope_and_takes_no_body_nor_nul(app, engine, make_merchant):
    merchant = make_merchant()
    with UnitOfWork(engine) as u:
        narrow = clients.create_client(u, merchant["merchant_id"], ("payment_intents:read",))
        u.commit()
    client = OwnAddressClient(app)
    auth = bearer(client, narrow)
    refused = client.simulate_post("/v1/customers/cus_1/erase", headers=auth)
    assert refused.status_code == 403 and refused.json["code"] == "insufficient_scope"
    auth = bearer(client, merchant)
    nul = client.simulate_post("/v1/customers/cus%001/erase", headers=auth)
    assert nul.status_code == 400 and nul.json["param"] == "customer"
    body = client.simulate_post("/v1/customers/cus_1/erase", json={"x": 1}, headers=auth)
    assert body.status_code == 400 and body.json["code"] == "parameter_unknown"
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).where(events.c.merchant_id == merchant["merchant_id"])
            ).scalar()
            == 0
        )


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python_bin("clearhouse"), *args], capture_output=True, text=True, timeout=60
    )


def test_the_cli_erases_and_audits_as_the_os_user(engine, make_merchant, submit):
    merchant = make_merchant()["merchant_id"]
    customer = f"cus_{secrets.token_hex(6)}"
    intent = submit(merchant, f.card_body(customer=customer, description="Ada"), enqueue=False)
    out = _cli("customer", "erase", "--merchant", merchant, "--customer", customer, "--json")
    assert out.returncode == 0 and out.stderr == "", out
    erasure = json.loads(out.stdout)
    assert erasure["intents_erased"] == 1
    with engine.connect() as conn:
        row = conn.execute(select(payment_intents).where(payment_intents.c.id == intent)).one()
        (audit,) = conn.execute(select(audit_log).where(audit_log.c.target == erasure["id"])).all()
    assert (row.customer, row.description) == ("[erased]", "[erased]")
    assert audit.actor == f"cli:{getpass.getuser()}" and customer not in json.dumps(audit.after)
    unknown = _cli("customer", "erase", "--merchant", "mch_nope", "--customer", customer)
    assert unknown.returncode == 1
    assert unknown.stderr == "clearhouse: error: No such merchant: 'mch_nope'\n"


def test_an_admin_erases_a_merchants_customer_through_the_operator_api(
    app, settings, engine, vault, make_merchant, submit
):
    from tests.support.operators import make_operator, operator_token

    merchant = make_merchant()["merchant_id"]
    customer = f"cus_{secrets.token_hex(6)}"
    intent = submit(merchant, f.card_body(customer=customer, description="Ada"), enqueue=False)
    client = OwnAddressClient(app)
    path = f"/v1/operator/merchants/{merchant}/customers/{customer}/erase"

    def as_role(role: str, url: str = path, body=None):
        op = make_operator(engine, vault, role)
        auth = {"Authorization": f"Bearer {operator_token(settings, op)}"}
        return op, client.simulate_post(url, headers=auth, json=body)

    _, support = as_role("support")  # irreversible: admins only
    assert support.status_code == 403 and support.json["code"] == "insufficient_role"
    _, nobody = as_role("admin", f"/v1/operator/merchants/mch_none/customers/{customer}/erase")
    assert nobody.status_code == 404 and nobody.json["code"] == "resource_missing"
    _, extra = as_role("admin", body={"reason": "asked"})
    assert extra.status_code == 400 and extra.json["code"] == "parameter_unknown"
    with engine.connect() as conn:
        untouched = conn.execute(
            select(payment_intents).where(payment_intents.c.id == intent)
        ).one()
    assert untouched.customer == customer  # the refusals changed nothing
    admin, got = as_role("admin")
    assert got.status_code == 200, got.text
    assert got.json["object"] == "customer_erasure" and got.json["intents_erased"] == 1
    with engine.connect() as conn:
        row = conn.execute(select(payment_intents).where(payment_intents.c.id == intent)).one()
        (audit,) = conn.execute(select(audit_log).where(audit_log.c.target == got.json["id"])).all()
    assert (row.customer, row.description) == ("[erased]", "[erased]")
    assert audit.actor == f"operator:{admin.email}" and audit.action == "customer.erase"
    assert customer not in json.dumps(audit.after)
    assert _erased_events(engine, merchant) == 1


def test_a_database_error_logs_no_customer_data_nor_card_token(engine, vault, make_merchant):
    """SQL parameters are hidden and Postgres's row echo redacted, down to the traceback."""
    merchant = make_merchant()["merchant_id"]
    customer, token = f"cus_{secrets.token_hex(6)}", vault.encrypt("4242424242424242", aad="x")
    with pytest.raises(IntegrityError) as failed, engine.begin() as conn:
        conn.execute(
            insert(payment_intents).values(
                id=f"pi_{secrets.token_hex(12)}",
                merchant_id=merchant,
                amount=0,  # refused by its check constraint: Postgres echoes the row
                currency="USD",
                status="processing",
                stage="received",
                capture_method="automatic",
                priority="standard",
                pm_type="card",
                payer_key="card:x",
                customer=customer,
                card_token=token,
                client_ip="10.99.98.97",
            )
        )
    assert customer in str(failed.value.orig)  # what the driver's own message holds
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "insert failed", None, None)
    record.exc_info = (type(failed.value), failed.value, failed.value.__traceback__)
    line = JsonFormatter().format(record)
    for value in (customer, token, "10.99.98.97"):
        assert value not in line
    assert "Failing row contains [REDACTED]" in line


def test_migration_0018_gives_the_new_scope_to_clients_that_had_every_scope():
    """Clients made as "everything" before 0018 may erase; a narrowed one still may not."""
    import os

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from shared.db.migrate import drop_database, upgrade
    from tests.support.scratchdb import admin_url

    name = f"clearhouse_scopes_{secrets.token_hex(4)}"
    url = admin_url(os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + name)
    upgrade(url, "0016")  # the revision before 0018
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO merchants (id, name, webhook_secret_enc) VALUES ('m', 'm', 'x')")
            )
            # As the code before 0018 made them: every scope then (the default), or a few.
            conn.execute(
                text(
                    "INSERT INTO api_clients (client_id, merchant_id, secret_hash)"
                    " VALUES ('all', 'm', 'h');"
                    " INSERT INTO api_clients (client_id, merchant_id, secret_hash, scopes)"
                    " VALUES ('few', 'm', 'h', 'payment_intents:read refunds:read')"
                )
            )
        upgrade(url)
        with engine.connect() as conn:
            scopes = dict(conn.execute(text("SELECT client_id, scopes FROM api_clients")).all())
        assert scopes == {
            "all": " ".join(ALL_SCOPES),
            "few": "payment_intents:read refunds:read",
        }
    finally:
        engine.dispose()
        drop_database(url)
