"""How long the daily report takes for a day of 100,000 intents (``make bench-report``).

Builds a fresh database, generates one UTC day (yesterday) of intents with
their ledger transfers in set-based SQL, balances consistent with the
transfers, then times ``reports.run_daily`` (report, reconciliation, sealing,
re-hashing the sealed day) REPORT_BENCH_RUNS times, each rolled back so every
run does the full work. The last stdout line is one JSON object (medians).
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from shared.config import with_user
from shared.db.migrate import drop_database, upgrade
from shared.db.uow import UnitOfWork
from shared.services import ledger_verify, reconcile, reports, seals

MERCHANTS = 50
# Status by g % 20: 16 succeeded (10 of them settled), 2 failed, 1 held, 1 canceled.
_STATUS = (
    "CASE WHEN g % 20 < 16 THEN 'succeeded' WHEN g % 20 < 18 THEN 'failed'"
    " WHEN g % 20 = 18 THEN 'requires_capture' ELSE 'canceled' END"
)

ACCOUNTS = [
    "INSERT INTO merchants (id, name, webhook_secret_enc)"
    " SELECT 'mch_' || m, 'bench ' || m, 'x' FROM generate_series(0, :merchants - 1) m",
    "INSERT INTO ledger_accounts (code, currency)"
    " SELECT k || c, c FROM unnest(ARRAY['USD', 'EUR']) c,"
    " unnest(ARRAY['external:card_clearing:', 'platform:fees:']) k",
    "INSERT INTO ledger_accounts (code, currency)"
    " SELECT 'merchant:mch_' || m || ':' || k || ':' || c, c"
    " FROM generate_series(0, :merchants - 1) m, unnest(ARRAY['USD', 'EUR']) c,"
    " unnest(ARRAY['pending', 'available']) k",
]
# Intents :lo to :hi, one every :spacing from :day (a batch of a bigger load, or all of it);
# long since sent on by the relay (enqueued_at), or a relay started on them would send them all.
INTENTS = f"""INSERT INTO payment_intents (id, merchant_id, amount, currency, status, stage,
        capture_method, priority, pm_type, payer_key, amount_received, fee_amount,
        settlement_status, created_at, updated_at, stage_changed_at, finalized_at, enqueued_at)
    SELECT 'pi_' || g, 'mch_' || (g % :merchants), 1000 + (g::bigint * 7919) % 100000,
        CASE WHEN g % 3 = 0 THEN 'EUR' ELSE 'USD' END, s, 'authorized', 'automatic',
        'standard', 'card', 'payer_' || (g % 5000),
        CASE WHEN s = 'succeeded' THEN 1000 + (g::bigint * 7919) % 100000 ELSE 0 END,
        CASE WHEN s = 'succeeded' THEN (1000 + (g::bigint * 7919) % 100000) * 29 / 1000 + 30 END,
        CASE WHEN s <> 'succeeded' THEN NULL WHEN g % 20 < 10 THEN 'settled' ELSE 'pending' END,
        t, t, t, t, t
    FROM (SELECT g, {_STATUS} AS s, :day + g * :spacing AS t
          FROM generate_series(:lo, :hi) g) x"""
# The transfers of the intents created in [:since, :until), as the ledger service makes them.
_BATCH = "(SELECT * FROM payment_intents WHERE created_at >= :since AND created_at < :until)"
TRANSFERS = [
    # Holds first (their ids are referenced), then everything else in time order.
    f"""INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id, amount,
        currency, intent_id, reason, created_at)
    SELECT 'pending', cc.id, mp.id, i.amount, i.currency, i.id, 'authorization', i.created_at
    FROM {_BATCH} i
    JOIN ledger_accounts cc ON cc.code = 'external:card_clearing:' || i.currency
    JOIN ledger_accounts mp ON mp.code = 'merchant:' || i.merchant_id || ':pending:' || i.currency
    ORDER BY i.created_at""",
    "UPDATE payment_intents i SET hold_transfer_id = t.id FROM ledger_transfers t"
    " WHERE t.intent_id = i.id AND t.kind = 'pending'"
    " AND i.created_at >= :since AND i.created_at < :until",
    f"""INSERT INTO ledger_transfers (kind, debit_account_id, credit_account_id, amount,
        currency, pending_id, intent_id, reason, created_at)
    SELECT kind, debit, credit, amount, currency, pending_id, intent_id, reason, at FROM (
        SELECT CASE WHEN i.status = 'succeeded' THEN 'post_pending' ELSE 'void_pending' END
            AS kind, h.debit_account_id AS debit, h.credit_account_id AS credit,
            h.amount, i.currency, h.id AS pending_id, i.id AS intent_id,
            CASE WHEN i.status = 'succeeded' THEN 'capture' ELSE 'authorization' END AS reason,
            i.created_at + interval '1 second' AS at
        FROM {_BATCH} i JOIN ledger_transfers h ON h.id = i.hold_transfer_id
        WHERE i.status <> 'requires_capture'
        UNION ALL
        SELECT 'posted', h.credit_account_id, f.id, i.fee_amount, i.currency, NULL, i.id,
            'fee', i.created_at + interval '1 second'
        FROM {_BATCH} i JOIN ledger_transfers h ON h.id = i.hold_transfer_id
        JOIN ledger_accounts f ON f.code = 'platform:fees:' || i.currency
        WHERE i.status = 'succeeded'
        UNION ALL
        SELECT 'posted', h.credit_account_id, a.id, i.amount_received - i.fee_amount,
            i.currency, NULL, i.id, 'settlement', i.created_at + interval '2 seconds'
        FROM {_BATCH} i JOIN ledger_transfers h ON h.id = i.hold_transfer_id
        JOIN ledger_accounts a
            ON a.code = 'merchant:' || i.merchant_id || ':available:' || i.currency
        WHERE i.settlement_status = 'settled'
    ) x ORDER BY at""",
]
# Balances exactly as the ledger service would have left them (once, after every batch).
BALANCES = (
    """UPDATE ledger_accounts a SET debits_pending = s.dp, debits_posted = s.dpo,
        credits_pending = s.cp, credits_posted = s.cpo
    FROM (SELECT id, dp, dpo, cp, cpo FROM ("""
    + reconcile._ACCOUNT_SUMS
    + """) q) s
    WHERE s.id = a.id"""
)
SETUP = [*ACCOUNTS, INTENTS, *TRANSFERS, BALANCES]
# 100,000 intents in one day.
SPACING = timedelta(milliseconds=860)


def _generate(engine, day, n: int) -> int:
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    params = {"merchants": MERCHANTS, "lo": 1, "hi": n, "day": start, "spacing": SPACING}
    params.update(since=start, until=start + timedelta(days=2))
    with engine.begin() as conn:
        for sql in SETUP:
            conn.execute(text(sql), params)
        count = conn.execute(text("SELECT count(*) FROM ledger_transfers")).scalar()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return count


def _timed(engine, fn) -> tuple[float, object]:
    # The services take a unit of work; left without commit() it rolls back, so every
    # run seals and writes from the same starting point.
    with UnitOfWork(engine) as u:
        began = time.perf_counter()
        out = fn(u)
        elapsed = time.perf_counter() - began
    return elapsed, out


def _clock(fn, *args) -> float:
    began = time.perf_counter()
    fn(*args)
    return time.perf_counter() - began


def _time_phases() -> dict[str, list[float]]:
    """Wrap the run's steps so each run records how long each took."""
    phases: dict[str, list[float]] = {}
    for module, name in (
        (reports, "build"),
        (reconcile, "discrepancies"),
        (reconcile, "day_discrepancies"),
        (seals, "seal_day"),
        (ledger_verify, "verify"),
    ):
        original = getattr(module, name)

        def timed(*args, _fn=original, _name=name, **kw):
            began = time.perf_counter()
            try:
                return _fn(*args, **kw)
            finally:
                phases.setdefault(_name, []).append(time.perf_counter() - began)

        setattr(module, name, timed)
    return phases


def main() -> int:
    n = int(os.environ.get("REPORT_BENCH_INTENTS", "100000"))
    runs = int(os.environ.get("REPORT_BENCH_RUNS", "3"))
    base = os.environ.get("DATABASE_URL", "postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/x")
    name = f"clearhouse_report_bench_{secrets.token_hex(3)}"
    url = base.rsplit("/", 1)[0] + "/" + name
    admin = (os.environ.get("MIGRATION_DATABASE_URL") or with_user(base)).rsplit("/", 1)[0]
    admin = admin + "/" + name
    day = datetime.now(UTC).date() - timedelta(days=1)
    upgrade(admin)
    engine = create_engine(url)
    try:
        began = time.perf_counter()
        transfers = _generate(engine, day, n)
        print(f"generated {n} intents, {transfers} transfers in {time.perf_counter() - began:.1f}s")
        phases = _time_phases()
        totals, results = [], []
        for i in range(runs):
            elapsed, result = _timed(engine, lambda c: reports.run_daily(c, day))
            totals.append(elapsed)
            results.append(result)
            print(
                f"run {i + 1}: {elapsed:.2f}s, {result.rows} rows, {result.discrepancy_count}"
                f" discrepancies, sealed {result.sealed}"
            )
        breakdown = {k: round(statistics.median(v), 3) for k, v in phases.items()}
        # In steady state the run also re-hashes the day sealed the day before.
        breakdown["rehash_one_day"] = round(
            _timed(engine, lambda c: (seals.seal_day(c, day), _clock(ledger_verify.verify, c)))[1][
                1
            ],
            3,
        )
        ok = all(not r.discrepancies and r.sealed for r in results)
        summary = {
            "intents": n,
            "transfers": transfers,
            "runs": runs,
            "report_s_median": round(statistics.median(totals), 3),
            "report_s_all": [round(t, 3) for t in totals],
            "breakdown_s": breakdown,
            "reconciled_and_sealed": ok,
        }
        print(json.dumps(summary))
        return 0 if ok else 1
    finally:
        engine.dispose()
        if not os.environ.get("BENCH_KEEP_DB"):
            drop_database(admin)


if __name__ == "__main__":
    sys.exit(main())
