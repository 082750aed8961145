"""The daily report: figures against the ledger, the job, the API, reconciliation."""

from __future__ import annotations

import csv
import io
import random
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from intake.app import create_app
from intake.resources.reports import CSV_HEADER
from shared.db.tables import daily_reports, ledger_accounts, refunds, report_runs
from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.services import reports
from tests import factories as f
from tests.support import books
from tests.support.apiclient import OwnAddressClient, bearer
from tests.support.scratchdb import admin_url, scratch_database
from tests.support.units import bound

pytestmark = pytest.mark.integration
STATUSES = ("processing", "requires_capture", "succeeded", "failed", "canceled")


def _wait_settled(engine, ids, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        rows = f.wait_until_final(engine, ids, final={"succeeded"})
        if all(r.settlement_status == "settled" for r in rows.values()):
            return
        assert time.monotonic() < deadline, "instant intents were not settled"
        time.sleep(0.1)  # polling interval


def _run_job(engine, day: date) -> dict:
    """Run the real beat task on the worker and wait for its report_runs row."""
    from workers.celery_app import app

    started = datetime.now(UTC)
    app.send_task("clearhouse.scheduler.daily_report", kwargs={"day": day.isoformat()})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            run = conn.execute(select(report_runs).where(report_runs.c.report_date == day)).first()
        if run is not None and run.created_at >= started - timedelta(seconds=1):
            return run
        time.sleep(0.2)  # polling interval
    raise AssertionError("the daily report job did not run")


def test_report_figures_equal_the_ledger_and_the_intents(worker, make_merchant, submit, engine):
    from shared.domain.refunds import validate_create as refund_request
    from shared.services import intents
    from shared.services import refunds as refund_service
    from workers.celery_app import publish as dispatch

    m = make_merchant()["merchant_id"]

    def card(number=None, amount=1000, **kw):
        return f.card_body(number, amount, **kw)  # no number: a new card (payer) each

    instant = [submit(m, card(amount=1000 + i, priority="instant")) for i in range(2)]
    standard = submit(m, card(amount=2000, priority="standard"))
    declined = submit(m, card(f.DECLINE, 500))
    manual = submit(m, card(amount=5000, capture_method="manual"))
    held = submit(m, card(amount=700, capture_method="manual"))
    ids = [*instant, standard, declined, manual, held]
    f.wait_until_final(engine, ids)
    with UnitOfWork(engine, dispatch) as u:
        intents.capture(u, m, manual, 3000)  # partial: 2000 released
        refund_service.create(u, m, refund_request({"payment_intent": standard, "amount": 800}))
        u.commit()
    _wait_settled(engine, instant)

    today = datetime.now(UTC).date()
    run = _run_job(engine, today)
    with engine.connect() as conn:
        # The run reconciles the layer's whole ledger: other tests' problems are
        # the layer audit's (tests/integration/conftest.py ledger_audit), ours are here.
        assert books.concerning(conn, run.discrepancies, [m]) == []
        assert books.own_discrepancies(conn, [m]) == []
        row = conn.execute(
            select(daily_reports).where(
                daily_reports.c.report_date == today, daily_reports.c.merchant_id == m
            )
        ).one()
        mine = conn.execute(select(pi).where(pi.c.merchant_id == m)).all()
        refund_rows = conn.execute(select(refunds).where(refunds.c.merchant_id == m)).all()
        balances = {
            a.code.split(":")[2]: a.credits_posted - a.debits_posted
            for a in conn.execute(
                select(ledger_accounts).where(ledger_accounts.c.code.like(f"merchant:{m}:%"))
            )
        }
    # Expected figures from other tables than the report reads.
    succeeded = [r for r in mine if r.status == "succeeded"]
    assert row.counts == {s: Counter(r.status for r in mine)[s] for s in STATUSES}
    assert row.counts["succeeded"] == 4 and row.counts["requires_capture"] == 1
    assert row.gross == sum(r.amount_received for r in succeeded) == 1000 + 1001 + 2000 + 3000
    assert row.refunds == sum(r.amount for r in refund_rows) == 800
    assert row.fees == sum(r.fee_amount for r in succeeded) - sum(
        r.fee_refunded for r in refund_rows
    )
    # A fresh merchant: the day's net is its whole balance, settled its available part.
    assert row.net == row.gross - row.fees - row.refunds == sum(balances.values())
    assert row.settled == balances["available"] > 0


@pytest.fixture
def client(settings, engine):
    app = create_app(settings, engine=engine, dispatch=lambda step, ids, countdown=None: None)
    return OwnAddressClient(app)


def _store(engine, day, rows):
    counts = dict.fromkeys(STATUSES, 0)
    with engine.begin() as conn:
        conn.execute(report_runs.insert().values(report_date=day, discrepancies=[], duration_ms=1))
        conn.execute(
            daily_reports.insert(),
            [
                dict(
                    report_date=day,
                    merchant_id=m,
                    currency=cur,
                    counts=dict(counts, failed=n),
                    gross=g,
                    fees=1,
                    refunds=0,
                    net=g - 1,
                    settled=0,
                )
                for m, cur, n, g in rows
            ],
        )


def test_api_serves_own_rows_as_json_or_csv(client, make_merchant, engine):
    a, b, c = make_merchant(), make_merchant(), make_merchant()
    day = date(1990, 1, 1) + timedelta(days=random.randrange(3000))
    _store(
        engine,
        day,
        [
            (a["merchant_id"], "USD", 2, 500),
            (a["merchant_id"], "EUR", 0, 70),
            (b["merchant_id"], "USD", 9, 999),
        ],
    )
    url = f"/v1/reports/daily?date={day.isoformat()}"
    resp = client.simulate_get(url, headers=bearer(client, a))
    assert resp.status_code == 200 and resp.json["object"] == "list"
    assert [(r["currency"], r["gross"], r["net"]) for r in resp.json["data"]] == [
        ("EUR", 70, 69),
        ("USD", 500, 499),
    ]
    assert resp.json["data"][1]["counts"] == dict.fromkeys(STATUSES, 0) | {"failed": 2}

    resp = client.simulate_get(url, headers={**bearer(client, a), "Accept": "text/csv"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(resp.text)))
    assert table[0] == CSV_HEADER
    assert table[1:] == [
        [day.isoformat(), "EUR", "0", "0", "0", "0", "0", "70", "1", "0", "69", "0"],
        [day.isoformat(), "USD", "0", "0", "0", "2", "0", "500", "1", "0", "499", "0"],
    ]
    other = client.simulate_get(url, headers=bearer(client, b)).json["data"]
    assert [(r["currency"], r["gross"]) for r in other] == [("USD", 999)]
    assert client.simulate_get(url, headers=bearer(client, c)).json["data"] == []


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("date=1970-01-02", 404, "resource_missing"),
        ("date=2024-02-30", 400, None),
        ("date=20240201", 400, None),
        ("", 400, "parameter_missing"),
        ("date=2024-02-01&x=1", 400, "parameter_unknown"),
    ],
)
def test_api_errors_are_problems(client, make_merchant, query, status, code):
    resp = client.simulate_get(
        "/v1/reports/daily", query_string=query, headers=bearer(client, make_merchant())
    )
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    if code:
        assert resp.json["code"] == code
    assert client.simulate_get("/v1/reports/daily", query_string=query).status_code == 401


# --- reconciliation in a throwaway database (it plants faults in the whole ledger)


def _seed(conn, day: date) -> dict:
    """A merchant, two intents and balanced transfers dated ``day``."""
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    conn.execute(
        text("INSERT INTO merchants (id, name, webhook_secret_enc) VALUES ('m1', 'M', 'x')")
    )
    for iid, status, received, fee in (("pi_a", "succeeded", 900, 30), ("pi_b", "failed", 0, None)):
        conn.execute(
            text(
                "INSERT INTO payment_intents (id, merchant_id, amount, currency, status, stage,"
                " capture_method, priority, pm_type, payer_key, amount_received, fee_amount,"
                " created_at, finalized_at) VALUES (:i, 'm1', 900, 'USD', :s, 'authorized',"
                " 'automatic', 'instant', 'card', 'p', :r, :f, :t, :t)"
            ),
            {"i": iid, "s": status, "r": received, "f": fee, "t": at},
        )
    codes = {
        "card_clearing": "external:card_clearing:USD",
        "pending": "merchant:m1:pending:USD",
        "fees": "platform:fees:USD",
        "available": "merchant:m1:available:USD",
    }
    acc = {
        name: conn.execute(
            text("INSERT INTO ledger_accounts (code, currency) VALUES (:c, 'USD') RETURNING id"),
            {"c": code},
        ).scalar_one()
        for name, code in codes.items()
    }
    moves = [  # (kind, debit, credit, amount, reason, pending)
        ("pending", "card_clearing", "pending", 900, "authorization", None),
        ("post_pending", "card_clearing", "pending", 900, "capture", "hold"),
        ("posted", "pending", "fees", 30, "fee", None),
        ("posted", "pending", "available", 870, "settlement", None),
    ]
    hold = None
    for kind, d, c, amount, reason, pending in moves:
        tid = conn.execute(
            text(
                "INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id, amount,"
                " currency, pending_id, intent_id, reason, created_at)"
                " VALUES (:k, :d, :c, :a, 'USD', :p, 'pi_a', :r, :t) RETURNING id"
            ),
            {
                "k": kind,
                "d": acc[d],
                "c": acc[c],
                "a": amount,
                "r": reason,
                "t": at,
                "p": hold if pending else None,
            },
        ).scalar_one()
        hold = hold or tid
    # Balances as the ledger service would leave them (the hold is resolved).
    for side, code, amount in (
        ("debits", "card_clearing", 900),
        ("credits", "pending", 900),
        ("debits", "pending", 900),
        ("credits", "fees", 30),
        ("credits", "available", 870),
    ):
        conn.execute(
            text(f"UPDATE ledger_accounts SET {side}_posted = {side}_posted + :a WHERE id = :i"),
            {"a": amount, "i": acc[code]},
        )
    return acc


def test_run_reconciles_seals_and_finds_planted_faults(database):
    day = datetime.now(UTC).date() - timedelta(days=2)
    with scratch_database("clearhouse_recon") as (url, engine):
        with engine.begin() as conn:
            acc = _seed(conn, day)
        with engine.begin() as conn:
            result = reports.run_daily(bound(conn), day)
        assert (result.discrepancies, result.sealed, result.sealed_days) == ([], True, [day])
        with engine.connect() as conn:
            row = conn.execute(select(daily_reports)).one()
        assert (row.merchant_id, row.gross, row.fees, row.refunds, row.net, row.settled) == (
            "m1",
            900,
            30,
            0,
            870,
            870,
        )
        assert row.counts == dict.fromkeys(STATUSES, 0) | {"succeeded": 1, "failed": 1}

        # Behind the ledger's back: a balance changed, a succeeded intent without its
        # transfers, a sealed entry altered by a superuser.
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE ledger_accounts SET credits_posted = credits_posted + 5 WHERE id = :i"
                ),
                {"i": acc["available"]},
            )
            conn.execute(text("UPDATE payment_intents SET status = 'succeeded' WHERE id = 'pi_b'"))
        admin = create_engine(admin_url(url), poolclass=NullPool)
        with admin.begin() as conn:  # the app role may not: test_db_roles.py
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text("UPDATE ledger_transfers SET amount = 31 WHERE reason = 'fee'"))
            fee_id = conn.execute(
                text("SELECT id FROM ledger_transfers WHERE reason = 'fee'")
            ).scalar()
        admin.dispose()
        with engine.begin() as conn:
            rerun = reports.run_daily(bound(conn), day)
        found = "\n".join(rerun.discrepancies)
        assert "account merchant:m1:available:USD: balances" in found
        assert "intent pi_b: succeeded without its capture transfer" in found
        assert f"transfer {fee_id} altered: hash mismatch" in found
        assert rerun.discrepancy_count == len(rerun.discrepancies) >= 4  # and pending != fees
        with engine.connect() as conn:
            stored = conn.execute(select(report_runs.c.discrepancies)).scalar_one()
            assert stored == rerun.discrepancies  # a rerun replaces the run and its rows
            assert conn.execute(select(daily_reports)).one().counts["succeeded"] == 2


def test_a_running_day_is_reported_but_not_sealed(database):
    today = datetime.now(UTC).date()
    with scratch_database("clearhouse_today") as (_, engine):
        with engine.begin() as conn:
            _seed(conn, today)
            result = reports.run_daily(bound(conn), today)
        assert (result.sealed, result.discrepancies, result.rows) == (False, [], 1)
