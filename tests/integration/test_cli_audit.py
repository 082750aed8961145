"""Every mutating ``clearhouse`` command leaves its audit row, as ``cli:<os user>``.

Real CLI processes on the layer's database; each test reads the rows of the
objects it made (the audit trail by target). A refused command writes no
row. The keys commands run on a key folder of their own, so the session's
keys are never rotated under the other tests.
"""

from __future__ import annotations

import getpass
import json
import os
import tempfile

import pytest
from sqlalchemy import select

from shared.db.tables import audit_log, merchants
from tests.support.clirun import cli, ok_json

pytestmark = pytest.mark.integration

WHO = f"cli:{getpass.getuser()}"


def rows_for(engine, target: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(audit_log).where(audit_log.c.target == target).order_by(audit_log.c.id)
        ).all()


def only_row(engine, target: str, action: str):
    rows = [r for r in rows_for(engine, target) if r.action == action]
    assert len(rows) == 1, (target, action, rows)
    (row,) = rows
    # The CLI has no request and no address: the OS user is who acted.
    assert (row.actor, row.request_id, row.source_ip) == (WHO, None, None)
    return row


@pytest.fixture(autouse=True)
def session_keys(vault):
    """The session's keys exist before a CLI process needs them (it would make its own)."""


def test_merchant_commands_each_leave_their_row_with_before_and_after(engine):
    made = ok_json("merchant", "create", "--name", "cli audit shop")
    mid = made["merchant_id"]
    row = only_row(engine, mid, "merchant.create")
    assert row.after == {
        "id": mid, "name": "cli audit shop", "webhook_url": None, "client_id": made["client_id"]
    }  # fmt: skip

    out = cli("merchant", "set-limits", "--merchant", mid, "--currency", "eur", "--daily", "900")
    assert out.returncode == 0, out
    row = only_row(engine, mid, "merchant.set_limits")
    assert row.before is None
    assert row.after == {
        "currency": "EUR", "scope": "merchant", "per_transaction": None, "daily": 900,
        "monthly": None,
    }  # fmt: skip

    out = cli("merchant", "set-fraud-threshold", "--merchant", mid, "--threshold", "30")
    assert out.returncode == 0, out
    row = only_row(engine, mid, "merchant.set_fraud_threshold")
    assert (row.before, row.after) == (
        {"fraud_block_threshold": None},
        {"fraud_block_threshold": 30},
    )

    url = "http://127.0.0.1:9/hooks?sig=s3cret"
    ok_json("merchant", "set-webhook-url", "--merchant", mid, "--url", url)
    row = only_row(engine, mid, "merchant.set_webhook_url")
    assert (row.before, row.after) == (
        {"webhook_url": None},
        {"webhook_url": "http://127.0.0.1:9/hooks?***"},
    )

    rotated = ok_json(
        "merchant", "rotate-webhook-secret", "--merchant", mid, "--overlap-hours", "1"
    )
    row = only_row(engine, mid, "merchant.rotate_webhook_secret")
    assert row.after["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]

    suspended = ok_json("merchant", "suspend", "--merchant", mid, "--reason", "fraud review")
    assert suspended["suspended"] is True
    row = only_row(engine, mid, "merchant.suspend")
    assert row.after["suspended_reason"] == "fraud review"
    with engine.connect() as conn:
        assert conn.execute(select(merchants.c.suspended_at).where(merchants.c.id == mid)).scalar()
    assert ok_json("merchant", "resume", "--merchant", mid)["suspended"] is False
    assert only_row(engine, mid, "merchant.resume").after["suspended_at"] is None

    text = str([(r.before, r.after) for r in rows_for(engine, mid)])
    for secret in (made["client_secret"], made["webhook_secret"], rotated["webhook_secret"]):
        assert secret not in text
    assert "s3cret" not in text


def test_a_refused_command_writes_no_row(engine, make_merchant):
    mid = make_merchant()["merchant_id"]
    refusals = [
        ("merchant", "resume", "--merchant", mid),  # not suspended
        ("merchant", "set-fraud-threshold", "--merchant", mid, "--threshold", "101"),
        ("merchant", "set-limits", "--merchant", mid, "--currency", "XXX"),
        ("merchant", "set-webhook-url", "--merchant", mid, "--url", "ftp://example.com/x"),
        ("merchant", "suspend", "--merchant", mid, "--reason", "x" * 501),
    ]
    for args in refusals:
        out = cli(*args)
        assert out.returncode != 0 and out.stderr.startswith("clearhouse: error: "), (args, out)
    assert "not suspended" in cli(*refusals[0]).stderr
    assert "at most 500" in cli(*refusals[4]).stderr
    out = cli("merchant", "suspend", "--merchant", "mch_none")
    assert out.returncode == 1 and "No such merchant: 'mch_none'" in out.stderr, out
    assert rows_for(engine, mid) == [] and rows_for(engine, "mch_none") == []


def test_wallet_and_client_commands_each_leave_their_row(engine, make_merchant):
    wallet = ok_json("wallet", "create", "--owner", "cli payer", "--currency", "usd")
    wid = wallet["wallet_id"]
    assert only_row(engine, wid, "wallet.create").after == {
        "wallet_id": wid, "owner": "cli payer", "currency": "USD"
    }  # fmt: skip
    ok_json("wallet", "fund", "--wallet", wid, "--amount", "2500")
    row = only_row(engine, wid, "wallet.fund")
    assert (row.before, row.after) == (
        {"balance": 0},
        {"balance": 2500, "amount": 2500, "currency": "USD"},
    )

    mid = make_merchant()["merchant_id"]
    client = ok_json("client", "create", "--merchant", mid, "--scopes", "balance:read")
    cid = client["client_id"]
    assert only_row(engine, cid, "client.create").after == {
        "client_id": cid, "merchant_id": mid, "scopes": ["balance:read"], "cert_sha256": None
    }  # fmt: skip
    rotated = ok_json("client", "rotate-secret", "--client", cid, "--overlap-h", "0")
    row = only_row(engine, cid, "client.rotate_secret")
    assert row.after == {"previous_secret_expires_at": None, "overlap_h": 0.0}
    revoked = ok_json("client", "revoke", "--client", cid)
    row = only_row(engine, cid, "client.revoke")
    assert (row.before, row.after) == (
        {"revoked_at": None},
        {"revoked_at": revoked["revoked_at"], "refresh_tokens_revoked": 0},
    )
    text = str([(r.before, r.after) for r in rows_for(engine, cid)])
    assert client["client_secret"] not in text and rotated["client_secret"] not in text


def test_key_commands_leave_one_row_after_the_change_naming_no_key(engine):
    env = {"CLEARHOUSE_KEY_DIR": tempfile.mkdtemp(prefix="clearhouse-audit-keys-")}

    def rows(action: str) -> list:
        with engine.connect() as conn:
            return conn.execute(
                select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
            ).all()

    def newest(action: str, seen: int):
        after = rows(action)
        assert len(after) == seen + 1, (action, after)
        assert (after[-1].actor, after[-1].request_id) == (WHO, None)
        return after[-1]

    seen = {a: len(rows(a)) for a in ("keys.init", "keys.rotate_jwt", "keys.rotate_card")}
    seen["keys.retire_card"] = len(rows("keys.retire_card"))
    created = ok_json("keys", "init", env=env)
    assert newest("keys.init", seen["keys.init"]).after == created
    again = ok_json("keys", "init", env=env)  # every file exists: nothing changed, no row
    assert set(again.values()) == {"exists"} and len(rows("keys.init")) == seen["keys.init"] + 1

    jwt = ok_json("keys", "rotate-jwt", env=env)
    row = newest("keys.rotate_jwt", seen["keys.rotate_jwt"])
    assert (row.target, row.after) == ("jwt", jwt)
    operator_ring = ok_json("keys", "rotate-jwt", "--ring", "operator", env=env)
    row = newest("keys.rotate_jwt", seen["keys.rotate_jwt"] + 1)
    assert (row.target, row.after) == ("operator_jwt", operator_ring)
    ok_json("keys", "rotate-card", env=env)
    card = ok_json("keys", "rotate-card", env=env)  # v3 current: v2 is used by no row
    assert rows("keys.rotate_card")[-1].after == card
    assert len(rows("keys.rotate_card")) == seen["keys.rotate_card"] + 2
    retired = ok_json("keys", "retire-card", "--version", "v2", env=env)
    assert newest("keys.retire_card", seen["keys.retire_card"]).after == retired

    # What the rows hold are key ids and versions, never the keys the files hold.
    secrets_in_files = _key_material(env["CLEARHOUSE_KEY_DIR"])
    logged = str([r.after for a in seen for r in rows(a)])
    assert len(secrets_in_files) >= 4 and not any(s in logged for s in secrets_in_files)


def _key_material(folder: str) -> set[str]:
    """The secrets of the key files: card keys, the fingerprint key, private JWT keys."""
    with open(os.path.join(folder, "card_keys.json")) as f:
        card = json.load(f)
    found = {entry.split(":", 1)[1] for entry in card["card_keys"].split(",")}
    found.add(card["fingerprint_key"])
    for ring_file in ("jwt_keys.json", "operator_jwt_keys.json"):
        if not os.path.exists(os.path.join(folder, ring_file)):
            continue
        with open(os.path.join(folder, ring_file)) as f:
            ring = json.load(f)
        for key in ring["keys"]:
            pem = key.get("private_key") or ""
            found.update(line for line in pem.splitlines() if line and "-----" not in line)
    return found
