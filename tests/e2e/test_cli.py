"""Every ``clearhouse`` subcommand as an operator runs it, with its effect seen over HTTP.

Each command is run for real (a subprocess of the installed entry point, on
the session's database), with ``--json`` where it has one; its output is
checked, then what it changed is observed through the running API (a
payment refused by a limit, blocked by the threshold or the blocklist, paid
from the funded wallet, a webhook signed with the rotated secret, the
report's rows, a token refused for its scope or its revoked client). A bad
argument gives one line on stderr and a non-zero exit (2 for usage errors,
1 for errors of the command), and changes nothing.
"""

from __future__ import annotations

import json
import random
import secrets
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, inspect, select

from shared.config import with_user
from shared.db import roles
from shared.db.tables import merchant_limits, merchants
from tests import factories as f
from tests.conftest import free_port
from tests.e2e.conftest import Client, cli
from tests.support.receiver import Receiver
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


def ok(*args: str, env: dict | None = None) -> str:
    out = cli(*args, env=env)
    assert out.returncode == 0 and out.stderr == "", (args, out.returncode, out.stderr)
    return out.stdout


def ok_json(*args: str) -> dict:
    stdout = ok(*args, "--json")
    assert stdout.count("\n") == 1, stdout  # one line of JSON
    return json.loads(stdout)


def plain(stdout: str) -> dict[str, str]:
    """``key: value`` lines as a dict."""
    return dict(line.split(": ", 1) for line in stdout.splitlines())


def refused(status: int, *args: str, says: str = "", env: dict | None = None) -> str:
    """The command fails with one line on stderr, nothing on stdout."""
    out = cli(*args, env=env)
    lines = out.stderr.splitlines()
    assert (out.returncode, out.stdout, len(lines)) == (status, "", 1), (args, out)
    assert lines[0].startswith("clearhouse: error: ") and says in lines[0], lines
    return lines[0]


def new_merchant(stack, name: str = "cli merchant") -> Client:
    return Client(stack["url"], ok_json("merchant", "create", "--name", name))


def pay(client: Client, body: dict) -> dict:
    r = client.post("/v1/payment_intents", body)
    assert r.status_code == 202, r.text
    return client.wait(r.json()["id"])


def card(amount: int, number: str | None = None, **extra) -> dict:
    return f.card_body(number or f.random_visa(random.Random()), amount, **extra)


def test_db_upgrade_creates_and_migrates_a_database(e2e_database):
    from shared.db.migrate import drop_database

    # As deployed by default: DATABASE_URL names the app role, MIGRATION_DATABASE_URL
    # is unset (the same server and database as the superuser `postgres`).
    url = e2e_database.rsplit("/", 1)[0] + f"/clearhouse_cli_{secrets.token_hex(4)}"
    env = {"DATABASE_URL": with_user(url, roles.APP), "MIGRATION_DATABASE_URL": ""}
    try:
        assert ok("db", "upgrade", env=env) == "database is at the latest schema\n"
        engine = create_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert {"payment_intents", "ledger_transfers", "merchants", "alembic_version"} <= tables
        assert ok("db", "upgrade", env=env) == "database is at the latest schema\n"  # no-op
    finally:
        drop_database(url)
    refused(2, "db", says="required: cmd")
    refused(2, "db", "downgrade", says="invalid choice: 'downgrade'")
    refused(2, says="required: group")


def test_merchant_create_gives_working_credentials_once(stack, e2e_engine):
    made = ok_json("merchant", "create", "--name", "json merchant")
    assert set(made) == {"merchant_id", "client_id", "client_secret", "webhook_secret"}
    assert made["client_secret"].startswith("cs_") and made["webhook_secret"].startswith("whsec_")
    Client(stack["url"], made)  # the credentials get a token from the API

    url = f"http://127.0.0.1:{free_port()}/hooks"
    shown = plain(ok("merchant", "create", "--name", "plain merchant", "--webhook-url", url))
    assert set(shown) == set(made) and shown["merchant_id"].startswith("mch_")
    Client(stack["url"], shown)
    with e2e_engine.connect() as conn:
        row = conn.execute(select(merchants).where(merchants.c.id == shown["merchant_id"])).one()
    assert (row.name, row.webhook_url) == ("plain merchant", url)
    assert shown["webhook_secret"] not in row.webhook_secret_enc  # stored encrypted only

    with e2e_engine.connect() as conn:
        before = conn.execute(select(merchants.c.id)).all()
    refused(2, "merchant", "create", says="required: --name")
    refused(1, "merchant", "create", "--name", "  ", says="name must not be empty")
    refused(1, "merchant", "create", "--name", "x", "--webhook-url", "ftp://h/x", says="refused")
    with e2e_engine.connect() as conn:
        assert conn.execute(select(merchants.c.id)).all() == before  # nothing created


def test_merchant_set_limits_refuses_payments_over_them(stack, e2e_engine):
    client = new_merchant(stack)
    mid = client.merchant["merchant_id"]
    out = ok("merchant", "set-limits", "--merchant", mid, "--currency", "usd",
             "--per-transaction", "1500")  # fmt: skip
    assert plain(out) == {"merchant_id": mid, "limits": "updated"}
    ok("merchant", "set-limits", "--merchant", mid, "--currency", "USD", "--scope", "payer",
       "--daily", "2500")  # fmt: skip

    number = f.random_visa(random.Random())
    first, second, third = (pay(client, card(1000, number)) for _ in range(3))
    assert first["status"] == second["status"] == "succeeded"  # 2000 <= 2500 for the payer
    assert (third["status"], third["failure_code"]) == ("failed", "limit_exceeded")
    assert third["failure_message"] == "The payment exceeds the payer daily limit."
    big = pay(client, card(2000))
    assert (big["status"], big["failure_code"]) == ("failed", "limit_exceeded")
    assert big["failure_message"] == "The payment exceeds the merchant per-transaction limit."

    with e2e_engine.connect() as conn:
        before = conn.execute(
            select(merchant_limits).where(merchant_limits.c.merchant_id == mid)
        ).all()
    base = ("merchant", "set-limits", "--merchant", mid, "--currency", "USD")
    refused(2, *base, "--daily", "-5", says="must be positive: '-5'")
    refused(2, *base, "--monthly", "ten", says="not an integer: 'ten'")
    refused(2, *base, "--scope", "world", says="invalid choice: 'world'")
    refused(1, "merchant", "set-limits", "--merchant", mid, "--currency", "XXX", "--daily", "1",
            says="unknown currency XXX")  # fmt: skip
    refused(1, "merchant", "set-limits", "--merchant", "mch_nope", "--currency", "USD",
            says="No such merchant")  # fmt: skip
    with e2e_engine.connect() as conn:
        after = conn.execute(
            select(merchant_limits).where(merchant_limits.c.merchant_id == mid)
        ).all()
    assert after == before


def test_merchant_set_fraud_threshold_blocks_at_it(stack):
    strict, lenient = new_merchant(stack), new_merchant(stack)
    mid = strict.merchant["merchant_id"]
    out = ok("merchant", "set-fraud-threshold", "--merchant", mid, "--threshold", "15")
    assert plain(out) == {"merchant_id": mid, "fraud_block_threshold": "15"}
    # A first payment of USD 1,000.00 scores 15 (first_time_large_amount).
    blocked = pay(strict, card(100_000))
    assert (blocked["status"], blocked["failure_code"]) == ("failed", "fraud_suspected")
    assert blocked["risk"]["score"] == 15
    assert pay(lenient, card(100_000))["status"] == "succeeded"

    refused(2, "merchant", "set-fraud-threshold", "--merchant", mid, "--threshold", "101",
            says="argument --threshold: must be an integer from 0 to 100")  # fmt: skip
    refused(1, "merchant", "set-fraud-threshold", "--merchant", "mch_nope", "--threshold", "50",
            says="No such merchant")  # fmt: skip
    assert pay(strict, card(100_000))["status"] == "failed"  # still 15


def test_webhook_url_and_secret_rotation_change_what_is_sent(stack):
    client = new_merchant(stack, "cli webhooks")
    mid, secret = client.merchant["merchant_id"], client.merchant["webhook_secret"]
    port = free_port()
    receiver = Receiver([secret], port).start()
    try:
        shown = ok_json("merchant", "set-webhook-url", "--merchant", mid, "--url", receiver.url)
        assert shown == {"merchant_id": mid, "webhook_url": receiver.url}
        pay(client, card(1000))
        receiver.wait_for(lambda r: len(r.received) == 2)  # processing, succeeded
        assert all(r.verified_with == [0] for r in receiver.received)

        rotated = plain(ok("merchant", "rotate-webhook-secret", "--merchant", mid))
        assert rotated["merchant_id"] == mid and rotated["webhook_secret"].startswith("whsec_")
        expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
        hours = (expires - datetime.now(UTC)).total_seconds() / 3600
        assert 23.9 < hours <= 24  # the default overlap (WEBHOOK_ROTATION_OVERLAP_H)
        receiver.secrets.append(rotated["webhook_secret"])
        pay(client, card(1000))
        receiver.wait_for(lambda r: len(r.received) == 4)
        assert all(r.verified_with == [0, 1] for r in receiver.received[2:])  # both sign
    finally:
        receiver.stop()
    refused(2, "merchant", "rotate-webhook-secret", "--merchant", mid, "--overlap-hours", "-1",
            says="must not be negative")  # fmt: skip
    refused(1, "merchant", "set-webhook-url", "--merchant", mid, "--url", "http://u:p@h/x",
            says="credentials")  # fmt: skip
    refused(1, "merchant", "set-webhook-url", "--merchant", "mch_nope", "--url", receiver.url,
            says="No such merchant")  # fmt: skip


def test_wallet_create_and_fund_pay_for_an_intent(stack):
    client = new_merchant(stack)
    wallet = ok_json("wallet", "create", "--owner", "alice", "--currency", "usd")
    assert wallet["wallet_id"].startswith("wal_")
    assert (wallet["owner"], wallet["currency"]) == ("alice", "USD")
    wid = wallet["wallet_id"]
    assert ok_json("wallet", "fund", "--wallet", wid, "--amount", "5000") == {
        "wallet_id": wid,
        "balance": 5000,
    }
    assert pay(client, f.wallet_body(wid, 3000))["status"] == "succeeded"
    broke = pay(client, f.wallet_body(wid, 2500))
    assert (broke["status"], broke["failure_code"]) == ("failed", "insufficient_funds")
    assert plain(ok("wallet", "fund", "--wallet", wid, "--amount", "100")) == {
        "wallet_id": wid,
        "balance": "2100",  # 5000 - 3000 + 100
    }

    refused(2, "wallet", "fund", "--wallet", wid, "--amount", "0", says="must be positive")
    refused(1, "wallet", "fund", "--wallet", "wal_nope", "--amount", "5", says="No such wallet")
    refused(1, "wallet", "create", "--owner", "bob", "--currency", "XXX", says="unknown currency")
    refused(2, "wallet", "create", "--owner", "bob", says="required: --currency")
    assert ok_json("wallet", "fund", "--wallet", wid, "--amount", "1")["balance"] == 2101


def test_blocklist_add_blocks_the_card(stack):
    client = new_merchant(stack)
    number = f.random_visa(random.Random())
    first = pay(client, card(1200, number))
    assert first["status"] == "succeeded"
    fingerprint = first["payment_method"]["card"]["fingerprint"]
    args = ("blocklist", "add", "--kind", "card_fingerprint", "--value", fingerprint)
    out = plain(ok(*args, "--reason", "chargeback"))
    assert out == {"kind": "card_fingerprint", "value": fingerprint, "blocked": "True"}
    assert plain(ok(*args)) == out  # adding it again changes nothing
    second = pay(client, card(1200, number))
    assert (second["status"], second["failure_code"]) == ("failed", "fraud_suspected")
    assert [r["code"] for r in second["risk"]["reasons"]] == ["blocklisted"]
    assert pay(client, card(1200))["status"] == "succeeded"  # another card still pays

    refused(2, "blocklist", "add", "--kind", "phone", "--value", "1", says="invalid choice")
    refused(2, "blocklist", "add", "--kind", "ip", says="required: --value")


def test_report_daily_and_ledger_verify(stack):
    client = new_merchant(stack, "cli report")
    paid = pay(client, card(2500))
    assert paid["status"] == "succeeded"
    today = datetime.now(UTC).date().isoformat()

    summary = ok_json("report", "daily", "--date", today)
    assert set(summary) == {"date", "rows", "sealed", "sealed_days", "duration_ms", "discrepancies"}
    assert (summary["date"], summary["sealed"], summary["discrepancies"]) == (today, False, [])
    assert summary["rows"] >= 1  # a day still running: reported, not sealed
    rows = client.get(f"/v1/reports/daily?date={today}").json()["data"]
    (usd,) = [r for r in rows if r["currency"] == "USD"]
    assert usd["counts"]["succeeded"] == 1 and usd["gross"] == 2500
    assert (usd["fees"], usd["net"]) == (paid["fee"], paid["net"])
    # The week and the month hold today as built so far (provisional); this merchant
    # was made today, so its figures are today's.
    iso = datetime.now(UTC).date().isocalendar()
    for route, query in (
        ("weekly", f"week={iso.year}-W{iso.week:02d}"),
        ("monthly", f"month={today[:7]}"),
    ):
        period = client.get(f"/v1/reports/{route}?{query}").json()
        assert today in period["days_provisional"] and period["complete"] is False, period
        (row,) = [r for r in period["data"] if r["currency"] == "USD"]
        assert {k: row[k] for k in ("counts", "gross", "fees", "net")} == {
            k: usd[k] for k in ("counts", "gross", "fees", "net")
        }

    shown = ok("report", "daily", "--date", today).splitlines()
    assert shown[0] == f"date: {today}" and "discrepancies: 0" in shown and "sealed: False" in shown

    verified = ok("ledger", "verify")
    assert verified.startswith("OK: ") and verified.count("\n") == 1, verified

    refused(2, "report", "daily", "--date", "2024-13-01", says="not a date (YYYY-MM-DD)")
    refused(2, "report", "daily", "--date", "20240101", says="not a date (YYYY-MM-DD)")
    refused(2, "report", "daily", says="required: --date")
    refused(2, "ledger", "verify", "--all", says="unrecognized arguments: --all")


def test_client_commands_scope_rotate_and_revoke_over_http(stack):
    owner = new_merchant(stack, "cli clients")
    mid = owner.merchant["merchant_id"]
    made = ok_json("client", "create", "--merchant", mid, "--scopes", "payment_intents:read")
    assert made["scopes"] == ["payment_intents:read"]
    reader = Client(stack["url"], {**owner.merchant, **made})
    assert reader.get("/v1/payment_intents").status_code == 200
    denied = reader.post("/v1/payment_intents", card(1000))
    assert denied.status_code == 403 and denied.json()["code"] == "insufficient_scope"
    assert "payment_intents:write" in denied.json()["detail"]

    rotated = ok_json("client", "rotate-secret", "--client", made["client_id"])
    assert rotated["previous_secret_expires_at"] is not None
    Client(stack["url"], {**made, "client_secret": rotated["client_secret"]})
    Client(stack["url"], made)  # the old secret, during the overlap

    assert (
        plain(ok("client", "revoke", "--client", made["client_id"]))["client_id"]
        == made["client_id"]
    )
    # Every API process refuses the token within 5 s (reread once a second).
    until(
        lambda: reader.get("/v1/payment_intents").status_code == 401,
        timeout=5,
        what="the revoked client's token to be refused",
    )
    assert all(reader.get("/v1/payment_intents").status_code == 401 for _ in range(10))
    assert owner.get("/v1/payment_intents").status_code == 200  # the merchant's first client
    listed = ok_json("client", "list", "--merchant", mid)["clients"]
    assert [c["revoked_at"] is not None for c in listed] == [False, True]
    refused(1, "client", "revoke", "--client", "ci_nope", says="No such client: 'ci_nope'")
    refused(2, "client", "create", "--merchant", mid, "--scopes", "all", says="unknown scope")
