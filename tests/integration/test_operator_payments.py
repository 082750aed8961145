"""The operator API for payments, the blocklist, report re-runs and the audit trail.

A real app on the layer's database, real operators (tests/support/operators.py)
and intents made the way the API makes them (``submit``), taken to succeeded
by the real worker where a test needs one. Each act must leave exactly one
audit row naming the operator, the request id sent and the source address; a
refused act leaves none and changes nothing.
"""

from __future__ import annotations

import getpass
import json
import secrets
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from intake.app import create_app
from shared.db.tables import audit_log, blocklist, events, payment_intents, webhook_deliveries
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_access_token
from tests import factories as f
from tests.conftest import ROOT, python_bin
from tests.support.apiclient import OwnAddressClient
from tests.support.operators import bearer, make_operator, operator_token
from tests.support.waiting import until

pytestmark = pytest.mark.integration


@pytest.fixture
def api(settings, engine, vault):
    return OwnAddressClient(
        create_app(settings, engine=engine, dispatch=lambda *a, **k: None, vault=vault)
    )


@pytest.fixture
def as_role(settings, engine, vault):
    """Factory: (operator, headers with its token and a request id of the test's own)."""

    def make(role: str):
        op = make_operator(engine, vault, role)
        request_id = f"req-test-{secrets.token_hex(6)}"
        return op, {**bearer(operator_token(settings, op)), "X-Request-Id": request_id}

    return make


def audit_rows(engine, target: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(audit_log).where(audit_log.c.target == target).order_by(audit_log.c.id)
        ).all()


def the_audit_row(engine, target: str, op, headers, api, action: str):
    """The one audit row of ``target``: the operator's, with the request's id and address."""
    (row,) = audit_rows(engine, target)
    assert (row.actor, row.action) == (f"operator:{op.email}", action)
    assert (row.request_id, row.source_ip) == (headers["X-Request-Id"], api.remote_addr)
    return row


def card_with_last4(last4: str | None = None, avoid: str | None = None) -> str:
    while True:
        number = f.new_card()
        if (last4 is None or number[-4:] == last4) and number[-4:] != avoid:
            return number


def paid(submit, engine, merchant_id: str, amount: int = 1000):
    """A succeeded intent (taken there by the worker); its row."""
    intent_id = submit(merchant_id, f.card_body(amount=amount))
    row = f.wait_until_final(engine, [intent_id])[intent_id]
    assert row.status == "succeeded", row.failure_code
    return row


def intent_row(engine, intent_id):
    with engine.connect() as conn:
        return conn.execute(select(payment_intents).where(payment_intents.c.id == intent_id)).one()


# --- search and detail


def test_search_filters_by_merchant_last4_status_and_time(api, as_role, make_merchant, submit):
    _, headers = as_role("viewer")
    mine, other = make_merchant()["merchant_id"], make_merchant()["merchant_id"]
    a = card_with_last4()
    b = card_with_last4(avoid=a[-4:])
    # Not enqueued: they stay processing, so the filters are tested on known statuses.
    first = submit(mine, f.card_body(a), enqueue=False)
    second = submit(mine, f.card_body(b), enqueue=False)
    theirs = submit(other, f.card_body(a), enqueue=False)

    def search(**params):
        got = api.simulate_get("/v1/operator/payment_intents", params=params, headers=headers)
        assert got.status_code == 200, got.text
        return got.json

    found = search(merchant=mine)
    assert [i["id"] for i in found["data"]] == [second, first]  # newest first
    assert {i["merchant"] for i in found["data"]} == {mine}
    assert found["data"][0]["payment_method"]["card"]["last4"] == b[-4:]
    assert [i["id"] for i in search(merchant=mine, last4=a[-4:])["data"]] == [first]
    both = {i["id"] for i in search(last4=a[-4:], limit="100")["data"]}
    assert {first, theirs} <= both and second not in both  # across merchants
    assert search(merchant=mine, status="processing")["data"] != []
    assert search(merchant=mine, status="succeeded")["data"] == []
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert search(merchant=mine, created_gte=later)["data"] == []
    assert len(search(merchant=mine, created_lte=later)["data"]) == 2
    assert search(merchant=mine, created_lte="86400")["data"] == []  # unix seconds: 1970
    page = search(merchant=mine, limit="1")
    assert (len(page["data"]), page["has_more"]) == (1, True)
    rest = search(merchant=mine, limit="1", starting_after=page["data"][0]["id"])
    assert ([i["id"] for i in rest["data"]], rest["has_more"]) == ([first], False)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"last4": "12a4"}, "last4"),
        ({"last4": "12345"}, "last4"),
        ({"status": "paid"}, "status"),
        ({"created_gte": "yesterday"}, "created_gte"),
        ({"created_lte": "2026-02-30"}, "created_lte"),
        ({"limit": "0"}, "limit"),
        ({"colour": "red"}, "colour"),
        ({"starting_after": "pi_nope"}, "starting_after"),
    ],
)
def test_a_bad_search_filter_is_a_400_naming_it(api, as_role, params, param):
    _, headers = as_role("viewer")
    got = api.simulate_get("/v1/operator/payment_intents", params=params, headers=headers)
    assert got.status_code in (400, 404) and got.json["param"] == param, got.text
    assert got.status_code == (404 if param == "starting_after" else 400)


def test_one_intent_with_its_events_deliveries_refunds_and_ledger(
    worker, api, as_role, hooked, submit, engine
):
    merchant, receiver = hooked
    row = paid(submit, engine, merchant["merchant_id"], 1500)
    op, headers = as_role("support")
    refunded = api.simulate_post(
        "/v1/operator/refunds", json={"payment_intent": row.id, "amount": 500}, headers=headers
    )
    assert refunded.status_code == 200, refunded.text

    def answered():
        got = api.simulate_get(f"/v1/operator/payment_intents/{row.id}", headers=headers).json
        intent_deliveries = [d for d in got["webhook_deliveries"] if d["status"] == "succeeded"]
        return got if intent_deliveries else None

    detail = until(answered, what="a delivered webhook of the intent's events")
    assert detail["object"] == "operator_payment_intent"
    assert detail["payment_intent"]["id"] == row.id
    assert detail["payment_intent"]["merchant"] == merchant["merchant_id"]
    assert detail["payment_intent"]["amount_refunded"] == 500
    types = [e["type"] for e in detail["events"]]
    assert "payment_intent.succeeded" in types and "refund.succeeded" in types
    delivered = next(d for d in detail["webhook_deliveries"] if d["status"] == "succeeded")
    assert delivered["event_id"] in {e["id"] for e in detail["events"]}
    assert [a["status_code"] for a in delivered["attempt_history"]][-1] == 200
    assert [r["id"] for r in detail["refunds"]] == [refunded.json["id"]]
    reasons = {t["reason"] for t in detail["ledger_transfers"]}
    assert "refund" in reasons and len(reasons) > 1
    assert all(t["debit_account"] and t["credit_account"] for t in detail["ledger_transfers"])

    missing = api.simulate_get("/v1/operator/payment_intents/pi_nope", headers=headers)
    assert missing.status_code == 404 and missing.json["code"] == "resource_missing"


# --- refunds


def test_support_refunds_on_the_merchants_behalf_audited_once(
    worker, api, as_role, make_merchant, submit, engine
):
    row = paid(submit, engine, make_merchant()["merchant_id"], 2000)
    op, headers = as_role("support")
    keyed = {**headers, "Idempotency-Key": f"key-{secrets.token_hex(6)}"}
    body = {"payment_intent": row.id, "amount": 700, "reason": "requested_by_customer"}
    got = api.simulate_post("/v1/operator/refunds", json=body, headers=keyed)
    assert got.status_code == 200, got.text
    assert (got.json["object"], got.json["amount"], got.json["payment_intent"]) == (
        "refund",
        700,
        row.id,
    )
    assert intent_row(engine, row.id).amount_refunded == 700
    audited = the_audit_row(engine, row.id, op, headers, api, "refund.create")
    assert audited.before == {"amount_refunded": 0}
    assert audited.after["refund"] == got.json["id"] and audited.after["amount"] == 700

    # The same key again: the same refund, replayed; no second refund, no second row.
    again = api.simulate_post("/v1/operator/refunds", json=body, headers=keyed)
    assert again.json == got.json and again.headers.get("Idempotent-Replayed") == "true"
    assert intent_row(engine, row.id).amount_refunded == 700
    assert len(audit_rows(engine, row.id)) == 1


def test_a_refused_refund_changes_nothing_and_leaves_no_audit_row(
    worker, api, as_role, make_merchant, submit, engine
):
    row = paid(submit, engine, make_merchant()["merchant_id"], 1000)
    _, headers = as_role("support")
    for body, code in (
        ({"payment_intent": row.id, "amount": 1001}, "amount_too_large"),
        ({"payment_intent": row.id, "amount": 0}, "parameter_invalid"),
        ({"payment_intent": row.id, "amount": "5"}, "parameter_invalid"),
    ):
        got = api.simulate_post("/v1/operator/refunds", json=body, headers=headers)
        assert got.status_code == 400 and got.json["param"] == "amount", got.text
        assert got.json["code"] in (code, "amount_too_small", "parameter_invalid_integer")
    missing = api.simulate_post(
        "/v1/operator/refunds", json={"payment_intent": "pi_nope", "amount": 1}, headers=headers
    )
    assert missing.status_code == 404
    assert intent_row(engine, row.id).amount_refunded == 0
    assert audit_rows(engine, row.id) == [] and audit_rows(engine, "pi_nope") == []


def test_two_racing_operator_refunds_never_refund_more_than_was_paid(
    worker, make_merchant, submit, engine
):
    from concurrent.futures import ThreadPoolExecutor

    from shared.db.uow import UnitOfWork
    from shared.domain.validation import ValidationError
    from shared.services import operator_payments
    from shared.services.audit import Actor

    row = paid(submit, engine, make_merchant()["merchant_id"], 1000)

    def refund_600(n: int):
        with UnitOfWork(engine) as uow:
            try:
                out = operator_payments.refund(uow, Actor(f"test:racer{n}"), row.id, 600)
            except ValidationError as exc:
                return exc.code
            uow.commit()
            return out["amount"]

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(refund_600, range(2)), key=str)
    assert outcomes == [600, "amount_too_large"]
    assert intent_row(engine, row.id).amount_refunded == 600
    (audited,) = audit_rows(engine, row.id)
    assert audited.before == {"amount_refunded": 0} and audited.after["amount_refunded"] == 600


def test_roles_and_token_kinds_are_checked(api, as_role, settings, make_merchant, engine):
    _, viewer = as_role("viewer")
    body = {"payment_intent": "pi_x", "amount": 1}
    got = api.simulate_post("/v1/operator/refunds", json=body, headers=viewer)
    assert got.status_code == 403 and got.json["code"] == "insufficient_role"
    block = {"kind": "ip", "value": f.new_ip()}
    got = api.simulate_post("/v1/operator/blocklist", json=block, headers=viewer)
    assert got.status_code == 403 and got.json["code"] == "insufficient_role"
    assert api.simulate_get("/v1/operator/blocklist", headers=viewer).status_code == 200
    _, support = as_role("support")
    got = api.simulate_post(
        "/v1/operator/reports/daily", json={"date": "2026-01-01"}, headers=support
    )
    assert got.status_code == 403 and got.json["code"] == "insufficient_role"
    merchant = make_merchant()["merchant_id"]
    token, _ = issue_access_token(
        SigningKeys.from_settings(settings), settings, merchant, "ci_x", "refunds:write"
    )
    got = api.simulate_post("/v1/operator/refunds", json=body, headers=bearer(token))
    assert got.status_code == 401 and got.json["code"] == "invalid_token"
    assert audit_rows(engine, "pi_x") == [] and audit_rows(engine, "2026-01-01") == []


# --- redeliver


def test_support_redelivers_any_merchants_event_audited(api, as_role, hooked, submit, engine):
    merchant, _ = hooked
    intent_id = submit(merchant["merchant_id"], f.card_body(), enqueue=False)
    with engine.connect() as conn:
        event_id = conn.execute(
            select(events.c.id).where(events.c.object_id == intent_id)
        ).scalar_one()
    op, headers = as_role("support")
    got = api.simulate_post(f"/v1/operator/events/{event_id}/redeliver", headers=headers)
    assert got.status_code == 202, got.text
    assert got.json["event_id"] == event_id and got.json["status"] == "pending"
    with engine.connect() as conn:
        found = conn.execute(
            select(webhook_deliveries.c.id).where(webhook_deliveries.c.id == got.json["id"])
        ).all()
    assert len(found) == 1
    audited = the_audit_row(engine, event_id, op, headers, api, "event.redeliver")
    assert audited.after == {
        "delivery": got.json["id"],
        "endpoint": got.json["endpoint"],
        "url": got.json["url"],
    }
    missing = api.simulate_post("/v1/operator/events/evt_nope/redeliver", headers=headers)
    assert missing.status_code == 404 and audit_rows(engine, "evt_nope") == []


# --- blocklist


def blocked(engine, kind: str, value: str):
    with engine.connect() as conn:
        return conn.execute(
            select(blocklist).where(blocklist.c.kind == kind, blocklist.c.value == value)
        ).first()


def test_support_blocks_and_unblocks_audited_with_before_and_after(api, as_role, engine):
    op, headers = as_role("support")
    ip = f.new_ip()
    target = f"ip:{ip}"
    body = {"kind": "ip", "value": ip, "reason": "card testing"}
    got = api.simulate_post("/v1/operator/blocklist", json=body, headers=headers)
    assert got.status_code == 200, got.text
    assert got.json == {"kind": "ip", "value": ip, "blocked": True}
    assert blocked(engine, "ip", ip).reason == "card testing"
    added = the_audit_row(engine, target, op, headers, api, "blocklist.add")
    assert (added.before, added.after) == (None, body)

    listed = api.simulate_get("/v1/operator/blocklist", params={"kind": "ip"}, headers=headers)
    entry = next(e for e in listed.json["data"] if e["value"] == ip)
    assert entry["id"] == target and entry["reason"] == "card testing"
    wallets = api.simulate_get("/v1/operator/blocklist?kind=wallet", headers=headers).json
    assert all(e["kind"] == "wallet" for e in wallets["data"])

    # By the query string here (a JSON body works as well: the card test below).
    removed = api.simulate_delete(
        "/v1/operator/blocklist", params={"kind": "ip", "value": ip}, headers=headers
    )
    assert removed.status_code == 200, removed.text
    assert removed.json == {"kind": "ip", "value": ip, "blocked": False}
    assert blocked(engine, "ip", ip) is None
    _, gone = audit_rows(engine, target)
    assert (gone.action, gone.before, gone.after) == ("blocklist.remove", body, None)
    assert gone.request_id == headers["X-Request-Id"]

    again = api.simulate_delete(
        "/v1/operator/blocklist", params={"kind": "ip", "value": ip}, headers=headers
    )
    assert again.status_code == 404 and len(audit_rows(engine, target)) == 2


def test_a_card_is_blocked_by_its_fingerprint_only(api, as_role, engine, vault):
    op, headers = as_role("support")
    number = f.new_card()
    refused = api.simulate_post(
        "/v1/operator/blocklist",
        json={"kind": "card_fingerprint", "value": number},
        headers=headers,
    )
    assert refused.status_code == 400 and refused.json["param"] == "value", refused.text
    assert blocked(engine, "card_fingerprint", number) is None
    assert audit_rows(engine, f"card_fingerprint:{number}") == []
    fingerprint = vault.fingerprint(number)
    entry = {"kind": "card_fingerprint", "value": fingerprint}
    got = api.simulate_post("/v1/operator/blocklist", json=entry, headers=headers)
    assert got.status_code == 200 and blocked(engine, "card_fingerprint", fingerprint)
    removed = api.simulate_delete("/v1/operator/blocklist", json=entry, headers=headers)
    assert removed.status_code == 200 and not blocked(engine, "card_fingerprint", fingerprint)
    both = api.simulate_delete(
        "/v1/operator/blocklist", json=entry, params={"kind": "ip"}, headers=headers
    )
    assert both.status_code == 400


# --- reports and the audit listing


def test_admin_reruns_a_daily_report_audited(api, as_role, engine):
    op, headers = as_role("admin")
    today = datetime.now(UTC).date().isoformat()
    before = len(audit_rows(engine, today))
    got = api.simulate_post("/v1/operator/reports/daily", json={"date": today}, headers=headers)
    assert got.status_code == 200, got.text
    assert got.json["object"] == "daily_report_run" and got.json["date"] == today
    rows = audit_rows(engine, today)
    assert len(rows) == before + 1
    row = rows[-1]
    assert (row.actor, row.action, row.request_id) == (
        f"operator:{op.email}",
        "report.rerun",
        headers["X-Request-Id"],
    )
    assert row.after["rows"] == got.json["rows"]
    bad = api.simulate_post(
        "/v1/operator/reports/daily", json={"date": "2026-02-30"}, headers=headers
    )
    assert bad.status_code == 400 and bad.json["param"] == "date"


def test_the_audit_trail_lists_newest_first_filtered_and_paged(api, as_role):
    op, headers = as_role("support")
    values = [f.new_ip() for _ in range(3)]
    for ip in values:
        body = {"kind": "ip", "value": ip}
        assert (
            api.simulate_post("/v1/operator/blocklist", json=body, headers=headers).status_code
            == 200
        )
    who = f"operator:{op.email}"

    def page(**params):
        got = api.simulate_get(
            "/v1/operator/audit", params={"actor": who, **params}, headers=headers
        )
        assert got.status_code == 200, got.text
        return got.json

    listed = page()
    assert [e["target"] for e in listed["data"]] == [f"ip:{ip}" for ip in reversed(values)]
    first = listed["data"][0]
    assert set(first) == {
        "object", "id", "at", "actor", "action", "target", "request_id", "source_ip", "before",
        "after",
    }  # fmt: skip
    assert (first["object"], first["actor"], first["action"]) == (
        "audit_entry",
        who,
        "blocklist.add",
    )
    assert first["source_ip"] == api.remote_addr and first["request_id"] == headers["X-Request-Id"]
    one = page(limit="1")
    assert one["has_more"] and one["data"] == listed["data"][:1]
    rest = page(starting_after=str(first["id"]))
    assert rest["data"] == listed["data"][1:] and not rest["has_more"]
    assert page(action="blocklist.remove")["data"] == []
    assert page(target=f"ip:{values[0]}")["data"] == [listed["data"][-1]]
    bad = api.simulate_get("/v1/operator/audit", params={"starting_after": "x"}, headers=headers)
    assert bad.status_code == 400 and bad.json["param"] == "starting_after"


# --- the CLI's acts are audited too, as cli:<os user>


def cli_json(*args: str) -> dict:
    out = subprocess.run(
        [python_bin("clearhouse"), *args, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0 and out.stderr == "", (args, out)
    return json.loads(out.stdout)


def test_cli_blocklist_add_and_remove_are_audited(engine, vault):  # vault: the key files exist
    customer = f"cus_{secrets.token_hex(6)}"
    target = f"customer:{customer}"
    args = ("--kind", "customer", "--value", customer)
    added = cli_json("blocklist", "add", *args, "--reason", "chargeback")
    assert added == {"kind": "customer", "value": customer, "blocked": True}
    assert blocked(engine, "customer", customer)
    removed = cli_json("blocklist", "remove", *args)
    assert removed == {"kind": "customer", "value": customer, "blocked": False}
    assert blocked(engine, "customer", customer) is None
    add, remove = audit_rows(engine, target)
    actor = f"cli:{getpass.getuser()}"
    assert (add.actor, add.action, add.after["reason"]) == (actor, "blocklist.add", "chargeback")
    assert (remove.actor, remove.action, remove.before["reason"]) == (
        actor,
        "blocklist.remove",
        "chargeback",
    )


def test_cli_report_daily_is_audited(engine, vault):
    today = datetime.now(UTC).date().isoformat()
    before = len(audit_rows(engine, today))
    summary = cli_json("report", "daily", "--date", today)
    assert summary["date"] == today and "object" not in summary
    rows = audit_rows(engine, today)
    assert len(rows) == before + 1
    assert (rows[-1].actor, rows[-1].action) == (f"cli:{getpass.getuser()}", "report.rerun")
