"""Weekly and monthly reports over HTTP: the sums of the stored daily reports.

First on a database of the test's own: real intents, fees, refunds and
settlements made by the stage functions, moved to days of the past (the
pipeline only writes the present), each day reported by the real daily job
(``maintenance.daily_report``, the beat task's body); every period must answer
the sum of the daily route's answers for its days, and the intents' own
figures. Then in the layer's database: stored daily rows drawn by hypothesis
(sums past BIGINT, days missing, provisional or unbalanced, another merchant's
rows beside), in periods no other test stores a report for.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from intake.app import create_app
from intake.resources.reports import period_csv_header
from shared.db.tables import daily_reports, report_runs
from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain.refunds import validate_create as refund_request
from shared.domain.validation import validate_create
from shared.services import intents, maintenance, merchants
from shared.services import refunds as refund_service
from shared.services.stages import settlement
from tests import factories as f
from tests.support.apiclient import OwnAddressClient, bearer
from tests.support.scratchdb import admin_url, scratch_database
from tests.support.stages import drive_in_process

pytestmark = pytest.mark.integration

STATUSES = ("processing", "requires_capture", "succeeded", "failed", "canceled")
MONEY = ("gross", "fees", "refunds", "net", "settled")
EXAMPLES = int(os.environ.get("CLEARHOUSE_PROPERTY_EXAMPLES", "20"))


def _app(settings, engine) -> OwnAddressClient:
    app = create_app(settings, engine=engine, dispatch=lambda step, ids, countdown=None: None)
    return OwnAddressClient(app)


def _get(client, auth, route: str, **query):
    return client.simulate_get(f"/v1/reports/{route}", params=query, headers=auth)


def _summed(daily_rows) -> dict:
    """{currency: (counts, money)} summed over daily (or period) rows."""
    out: dict = {}
    for r in daily_rows:
        counts, money = out.setdefault(r["currency"], (Counter(), Counter()))
        counts.update({s: r["counts"][s] for s in STATUSES})
        money.update({m: r[m] for m in MONEY})
    return {
        c: ({s: counts[s] for s in STATUSES}, {m: money[m] for m in MONEY})
        for c, (counts, money) in out.items()
    }


def _csv_matches(client, auth, route: str, kind: str, label: str, body: dict) -> None:
    resp = client.simulate_get(
        f"/v1/reports/{route}", params={kind: label}, headers={**auth, "Accept": "text/csv"}
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert f"{route}-report-{label}.csv" in resp.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(resp.text)))
    assert table[0] == period_csv_header(kind)
    tail = [
        str(body["days"]),
        str(body["days_reported"]),
        str(body["complete"]).lower(),
        body["reconciliation"]["status"],
    ]
    assert table[1:] == [
        [label, body["first_day"], body["last_day"], r["currency"]]
        + [str(r["counts"][s]) for s in STATUSES]
        + [str(r[m]) for m in MONEY]
        + tail
        for r in body["data"]
    ]


# --- real days, through the real daily job, on a database of the test's own

WEEK = "2026-W01"  # Monday 2025-12-29 to Sunday 2026-01-04: two months and two years
DECEMBER, JANUARY = "2025-12", "2026-01"
UNREPORTED = date(2026, 1, 4)  # the week's Sunday: never reported


def _now(engine) -> datetime:
    with engine.connect() as conn:
        return conn.execute(select(func.now())).scalar_one()


def _pay(engine, vault, merchant: str, payments) -> list[str]:
    """Intents of ``(amount, currency, card)`` through every stage here; instant, so settled."""
    ids = []
    with UnitOfWork(engine) as u:
        for amount, currency, card in payments:
            body = f.card_body(card, amount, currency=currency, priority="instant")
            row = intents.create(
                u,
                vault,
                merchant,
                validate_create(body, date.today()),
                client_ip=f.new_ip(),
                request_id=None,
            )
            ids.append(row.id)
        u.commit()
    result = drive_in_process(engine, vault, ids)
    with UnitOfWork(engine) as u:
        settlement.settle(u, result.settle_now)
        u.commit()
    return ids


def _refund(engine, merchant: str, intent_id: str, amount: int) -> None:
    with UnitOfWork(engine) as u:
        refund_service.create(
            u, merchant, refund_request({"payment_intent": intent_id, "amount": amount})
        )
        u.commit()


def _move_to(admin, since: datetime, day: date) -> None:
    """Date everything written since ``since`` at noon on ``day`` (as if it happened then)."""
    noon = datetime.combine(day, time(12), tzinfo=UTC)
    at = {"since": since, "t": noon}
    with admin.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))  # past immutability
        conn.execute(
            text("UPDATE ledger_transfers SET created_at = :t WHERE created_at >= :since"), at
        )
        conn.execute(text("UPDATE refunds SET created_at = :t WHERE created_at >= :since"), at)
        conn.execute(
            text("UPDATE payment_intents SET created_at = :t WHERE created_at >= :since"), at
        )
        conn.execute(
            text("UPDATE payment_intents SET finalized_at = :t WHERE finalized_at >= :since"), at
        )


def _report(engine, day: date) -> None:
    with UnitOfWork(engine) as u:
        maintenance.daily_report(u, day)
        u.commit()


@pytest.fixture(scope="module")
def real_days(settings, vault, database):
    """Two merchants' real business on six past days and today, each day reported but one."""
    with scratch_database("clearhouse_periods") as (url, engine):
        admin = create_engine(admin_url(url), poolclass=NullPool)
        made = {}
        for name in ("a", "b"):
            with UnitOfWork(engine) as u:
                made[name] = merchants.create_merchant(u, vault, f"periods {name}", None, True)
                u.commit()
        a, b = made["a"]["merchant_id"], made["b"]["merchant_id"]
        ok = None  # f.card_body: a card of its own, approved
        plan = {
            date(2025, 12, 15): {
                a: [(1000, "USD", ok), (500, "USD", f.DECLINE)],
                b: [(7000, "USD", ok)],
            },
            date(2025, 12, 30): {a: [(2000, "USD", ok), (3000, "EUR", ok)], b: [(900, "EUR", ok)]},
            date(2025, 12, 31): {
                a: [(1500, "USD", f.DECLINE), (700, "JPY", ok)],
                b: [(300, "USD", ok)],
            },
            date(2026, 1, 2): {a: [(4000, "USD", ok)]},
            date(2026, 1, 3): {a: [(2500, "EUR", ok)], b: [(100, "USD", ok)]},
            UNREPORTED: {a: [(800, "USD", ok)], b: [(600, "USD", ok)]},
            date(2026, 1, 20): {a: [(6000, "USD", ok)], b: [(50, "EUR", ok)]},
        }
        paid: dict[date, dict[str, list[str]]] = {}
        for day, payments in plan.items():
            since = _now(engine)
            paid[day] = {m: _pay(engine, vault, m, p) for m, p in payments.items()}
            if day == date(2025, 12, 30):
                _refund(engine, a, paid[day][a][0], 500)  # the same day
            if day == date(2026, 1, 2):
                _refund(engine, a, paid[date(2025, 12, 30)][a][1], 1000)  # a later day
            _move_to(admin, since, day)
        day = date(2025, 12, 1)
        while day <= date(2026, 1, 31):
            if day != UNREPORTED:
                _report(engine, day)
            day += timedelta(days=1)
        # Today: built before its end, so provisional; nothing else of this week is reported.
        today = datetime.now(UTC).date()
        paid[today] = {a: _pay(engine, vault, a, [(900, "USD", ok)])}
        _report(engine, today)
        # Behind the ledger's back, after the other runs: a declined intent of 31 December
        # marked succeeded; that day's rerun finds it (and recounts it).
        with admin.begin() as conn:
            conn.execute(
                text("UPDATE payment_intents SET status = 'succeeded' WHERE id = :i"),
                {"i": paid[date(2025, 12, 31)][a][0]},
            )
        _report(engine, date(2025, 12, 31))
        admin.dispose()
        client = _app(settings, engine)
        yield {
            "engine": engine,
            "client": client,
            "auth": {name: bearer(client, m) for name, m in made.items()},
            "merchants": {"a": a, "b": b},
            "today": today,
        }


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _daily(client, auth, days) -> dict[date, list]:
    """The daily route's rows of each reported day among ``days``."""
    found = {}
    for d in days:
        resp = _get(client, auth, "daily", date=d.isoformat())
        assert resp.status_code in (200, 404), resp.text
        if resp.status_code == 200:
            found[d] = resp.json["data"]
    return found


def _periods(today: date):
    iso = today.isocalendar()
    return [
        ("weekly", "week", WEEK, date(2025, 12, 29), date(2026, 1, 4)),
        ("monthly", "month", DECEMBER, date(2025, 12, 1), date(2025, 12, 31)),
        ("monthly", "month", JANUARY, date(2026, 1, 1), date(2026, 1, 31)),
        (
            "weekly",
            "week",
            f"{iso.year}-W{iso.week:02d}",
            today - timedelta(days=iso.weekday - 1),
            today + timedelta(days=7 - iso.weekday),
        ),
    ]


@pytest.mark.parametrize("who", ["a", "b"])
def test_each_period_is_the_sum_of_its_daily_reports(real_days, who):
    client, auth, today = real_days["client"], real_days["auth"][who], real_days["today"]
    for route, kind, label, first, last in _periods(today):
        days = _days(first, last)
        daily = _daily(client, auth, days)
        resp = _get(client, auth, route, **{kind: label})
        assert resp.status_code == 200, resp.text
        body = resp.json
        assert (body["object"], body["url"], body["has_more"]) == (
            "list",
            f"/v1/reports/{route}",
            False,
        )
        assert (body[kind], body["first_day"], body["last_day"], body["days"]) == (
            label,
            first.isoformat(),
            last.isoformat(),
            len(days),
        )
        assert _summed(body["data"]) == _summed(r for rows in daily.values() for r in rows), label
        assert [r["currency"] for r in body["data"]] == sorted(_summed(body["data"]))
        assert {(r["object"], r[kind]) for r in body["data"]} <= {(f"{route}_report_row", label)}
        assert body["days_reported"] == len(daily)
        assert body["days_missing"] == [d.isoformat() for d in days if d not in daily]
        provisional = [today.isoformat()] if first <= today <= last else []
        assert body["days_provisional"] == provisional
        assert body["complete"] is (len(daily) == len(days) and not provisional)
        _csv_matches(client, auth, route, kind, label, body)


def test_the_periods_answer_the_intents_own_figures_and_reconciliation(real_days):
    client, auth, engine = real_days["client"], real_days["auth"]["a"], real_days["engine"]
    a, b = real_days["merchants"]["a"], real_days["merchants"]["b"]
    week = _get(client, auth, "weekly", week=WEEK).json
    with engine.connect() as conn:
        mine = conn.execute(
            select(pi).where(
                pi.c.merchant_id == a,
                pi.c.created_at >= datetime(2025, 12, 29, tzinfo=UTC),
                pi.c.created_at < datetime(2026, 1, 4, tzinfo=UTC),  # Sunday unreported
            )
        ).all()
    rows = {r["currency"]: r for r in week["data"]}
    assert set(rows) == {"USD", "EUR", "JPY"}  # a's currencies, not b's alone
    for cur, row in rows.items():
        theirs = [r for r in mine if r.currency == cur]
        assert row["counts"] == {s: sum(r.status == s for r in theirs) for s in STATUSES}
        # Gross from the ledger: the intent marked succeeded behind its back captured nothing.
        assert row["gross"] == sum(r.amount_received for r in theirs)
    assert rows["USD"]["counts"]["succeeded"] == 3  # 2000, 4000, and the planted one
    assert (rows["USD"]["refunds"], rows["EUR"]["refunds"]) == (500, 1000)
    for row in rows.values():
        assert row["net"] == row["gross"] - row["fees"] - row["refunds"]
    # The runs' findings: 31 December's rerun found the planted intent; January's runs were
    # made before it, and its Sunday was never reported.
    assert week["reconciliation"] == {
        "status": "discrepancies",
        "days_with_discrepancies": ["2025-12-31"],
    }
    december = _get(client, auth, "monthly", month=DECEMBER).json
    assert (december["complete"], december["reconciliation"]["status"]) == (True, "discrepancies")
    january = _get(client, auth, "monthly", month=JANUARY).json
    assert january["reconciliation"] == {"status": "incomplete", "days_with_discrepancies": []}
    assert january["days_missing"] == [UNREPORTED.isoformat()]
    # Merchant b's business on the same days never shows in a's periods, nor a's in b's.
    theirs = _get(client, real_days["auth"]["b"], "weekly", week=WEEK).json
    assert [r["currency"] for r in theirs["data"]] == ["EUR", "USD"]
    assert {r["currency"]: r["gross"] for r in theirs["data"]} == {"EUR": 900, "USD": 400}
    assert a != b


# --- stored daily rows drawn by hypothesis, in the layer's database

# Periods of their own, one per example: weeks from 1901-W01, months from 1200-01
# (test_reports.py stores days of the 1970s and 1990s; test_oauth_clients.py asks for
# 1100-W01 and 1100-01, which nobody reports).
_weeks = itertools.count()
_months = itertools.count()


def _next_period(kind: str) -> tuple[str, list[date]]:
    if kind == "week":
        monday = date(1901, 1, 7) + timedelta(weeks=next(_weeks))  # 1901-W02 onwards
        iso = monday.isocalendar()
        return f"{iso.year}-W{iso.week:02d}", _days(monday, monday + timedelta(days=6))
    n = next(_months)
    first = date(1200 + n // 12, n % 12 + 1, 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return f"{first.year}-{first.month:02d}", _days(first, last)


amounts = st.integers(-(10**36), 10**36)  # 31 of them still fit NUMERIC(38,0)
figures = st.fixed_dictionaries(
    {
        "counts": st.fixed_dictionaries({s: st.integers(0, 10**6) for s in STATUSES}),
        **{m: amounts for m in MONEY},
    }
)
merchant_rows = st.dictionaries(st.sampled_from(["USD", "EUR", "ETH", "JPY"]), figures, max_size=3)
# A day: not reported (None), or its run (findings, built before its end?) and both
# merchants' rows.
stored_day = st.none() | st.tuples(st.integers(0, 2), st.booleans(), merchant_rows, merchant_rows)


def _store(engine, merchants_: tuple[str, str], days: list[date], drawn: list) -> None:
    with engine.begin() as conn:
        for day, stored in zip(days, drawn, strict=True):
            if stored is None:
                continue
            found, provisional, *rows = stored
            run = {"report_date": day, "discrepancies": [f"planted {i}" for i in range(found)]}
            if provisional:
                run["created_at"] = datetime.combine(day, time(23, 59), tzinfo=UTC)
            conn.execute(report_runs.insert().values(duration_ms=1, **run))
            values = [
                dict(report_date=day, merchant_id=m, currency=cur, **fig)
                for m, by_currency in zip(merchants_, rows, strict=True)
                for cur, fig in by_currency.items()
            ]
            if values:
                conn.execute(daily_reports.insert(), values)


@pytest.fixture(scope="module")
def layer(settings, engine, vault):
    """The app on the layer's database, two merchants of the module's own, and mine's token."""
    client = _app(settings, engine)
    made = []
    for name in ("mine", "theirs"):
        with UnitOfWork(engine) as u:
            made.append(merchants.create_merchant(u, vault, f"periods {name}", None, True))
            u.commit()
    return client, [m["merchant_id"] for m in made], bearer(client, made[0])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(kind=st.sampled_from(["week", "month"]), data=st.data())
def test_a_period_sums_whatever_its_days_stored(layer, engine, kind, data):
    client, (mine, theirs), auth = layer
    label, days = _next_period(kind)
    drawn = data.draw(st.lists(stored_day, min_size=len(days), max_size=len(days)))
    _store(engine, (mine, theirs), days, drawn)
    route = {"week": "weekly", "month": "monthly"}[kind]
    resp = _get(client, auth, route, **{kind: label})
    reported = {d: s for d, s in zip(days, drawn, strict=True) if s is not None}
    if not reported:
        assert resp.status_code == 404 and resp.json["code"] == "resource_missing"
        assert resp.json["param"] == kind
        return
    assert resp.status_code == 200, resp.text
    body = resp.json
    expected: dict = {}
    for _, _, own, _ in reported.values():
        for cur, fig in own.items():
            counts, money = expected.setdefault(cur, (Counter(), Counter()))
            counts.update(fig["counts"])
            money.update({m: fig[m] for m in MONEY})
    assert _summed(body["data"]) == {
        c: ({s: counts[s] for s in STATUSES}, {m: money[m] for m in MONEY})
        for c, (counts, money) in expected.items()
    }
    assert body["days_missing"] == [d.isoformat() for d in days if d not in reported]
    assert body["days_provisional"] == [d.isoformat() for d, s in reported.items() if s[1]]
    unbalanced = [d.isoformat() for d, s in reported.items() if s[0]]
    assert body["reconciliation"]["days_with_discrepancies"] == unbalanced
    complete = len(reported) == len(days) and not body["days_provisional"]
    assert body["complete"] is complete
    status = "discrepancies" if unbalanced else "balanced" if complete else "incomplete"
    assert body["reconciliation"]["status"] == status
    _csv_matches(client, auth, route, kind, label, body)


def _future(today: date) -> dict[str, str]:
    """Next week's and next month's labels: periods that have not begun."""
    iso = (today + timedelta(days=7)).isocalendar()
    after = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    return {"weekly": f"{iso.year}-W{iso.week:02d}", "monthly": f"{after.year}-{after.month:02d}"}


@pytest.mark.parametrize(
    ("route", "query", "status", "param", "code"),
    [
        ("weekly", "week=2025-W53", 400, "week", "parameter_invalid"),  # 2025 has 52
        ("weekly", "week=2026-W54", 400, "week", "parameter_invalid"),
        ("weekly", "week=2026-W00", 400, "week", "parameter_invalid"),
        ("weekly", "week=2026-48", 400, "week", "parameter_invalid"),
        ("weekly", "week=2026-w48", 400, "week", "parameter_invalid"),
        ("weekly", "week=", 400, "week", "parameter_missing"),
        ("weekly", "", 400, "week", "parameter_missing"),
        ("weekly", "week=2026-W01&week=2026-W02", 400, "week", "parameter_invalid"),
        ("weekly", "week=2026-W01&month=2026-01", 400, "month", "parameter_unknown"),
        ("weekly", "week=1100-W01", 404, "week", "resource_missing"),
        ("weekly", "week=NEXT", 400, "week", "parameter_invalid"),
        ("monthly", "month=2026-13", 400, "month", "parameter_invalid"),
        ("monthly", "month=2026-00", 400, "month", "parameter_invalid"),
        ("monthly", "month=0000-01", 400, "month", "parameter_invalid"),
        ("monthly", "month=2026-1", 400, "month", "parameter_invalid"),
        ("monthly", "", 400, "month", "parameter_missing"),
        ("monthly", "month=1100-01", 404, "month", "resource_missing"),
        ("monthly", "month=NEXT", 400, "month", "parameter_invalid"),
    ],
)
def test_bad_periods_are_problems_naming_the_param(layer, route, query, status, param, code):
    client, _, auth = layer
    future = "NEXT" in query
    query = query.replace("NEXT", _future(datetime.now(UTC).date())[route])
    resp = client.simulate_get(f"/v1/reports/{route}", query_string=query, headers=auth)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert (resp.json["param"], resp.json["code"]) == (param, code), resp.json
    assert ("has not begun" in resp.json["detail"]) is future
    assert client.simulate_get(f"/v1/reports/{route}", query_string=query).status_code == 401
