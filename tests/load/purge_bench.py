"""How fast the card-data purge empties a big table, how long it holds rows (``make bench-purge``).

Builds a fresh database with PURGE_BENCH_INTENTS intents (default 1,000,000),
every one holding a card token, in set-based SQL as the owner role: 80 % final
for 31 to 400 days (what the purge takes), 10 % final within the retention, 5 %
held (requires_capture) and 5 % processing for as long (never taken). Then
runs ``retention.purge_card_data`` in a loop as the app role, one transaction
per batch of RETENTION_BATCH rows (default 200), as beat's job does, while a
probe thread keeps locking random intents the purge will take (as a refund or
the API would) and times how long it waits for them.

The last stdout line is one JSON object: rows/s, the batches' transaction
times (the longest is the longest any row is held), the probe's waits, and
whether the candidates were found through ``ix_intents_card_purge``.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
import threading
import time

from sqlalchemy import create_engine, text

from shared.config import Settings, with_user
from shared.db.engine import get_engine
from shared.db.migrate import drop_database, upgrade
from shared.db.uow import UnitOfWork
from shared.services import retention

N = int(os.environ.get("PURGE_BENCH_INTENTS", "1000000"))
BATCH = int(os.environ.get("RETENTION_BATCH", "200"))
DAYS = 30

# g % 20: 0-15 final long ago (taken), 16-17 final recently, 18 held, 19 processing.
_STATUS = (
    "CASE WHEN g % 20 < 16 THEN (ARRAY['succeeded', 'failed', 'canceled'])[1 + g % 3]"
    " WHEN g % 20 < 18 THEN 'succeeded' WHEN g % 20 = 18 THEN 'requires_capture'"
    " ELSE 'processing' END"
)
GENERATE = f"""
INSERT INTO payment_intents (id, merchant_id, amount, currency, status, stage, capture_method,
    priority, pm_type, card_token, card_fingerprint, card_last4, card_brand, card_exp_month,
    card_exp_year, payer_key, description, metadata, customer, client_ip, created_at,
    updated_at, stage_changed_at, finalized_at)
SELECT 'pi_' || lpad(to_hex(g), 24, '0'), 'mch_bench_' || (g % 50), 1000 + g % 90000, 'USD',
    s, CASE WHEN s = 'processing' THEN 'fee_computed' ELSE 'authorized' END, 'automatic',
    'standard', 'card',
    -- the size of a real token: version, 12-byte nonce, 16-byte number, 16-byte tag (base64)
    'v1:' || encode(sha256(g::text::bytea) || substr(sha256(('n' || g)::bytea), 1, 12), 'base64'),
    substr(md5(g::text), 1, 32), lpad((g % 10000)::text, 4, '0'), 'visa', 1 + g % 12, 2030,
    'card:' || substr(md5(g::text), 1, 32), 'Order ' || g, '{{"order": "o"}}'::jsonb,
    'cus_' || (g % 200000), '10.' || (g % 250) || '.' || (g / 250 % 250) || '.1', t, t, t,
    CASE WHEN s = 'processing' THEN NULL ELSE t END
FROM (SELECT g, {_STATUS} AS s,
             now() - CASE WHEN g % 20 IN (16, 17) THEN (g % 29) * interval '1 day'
                          ELSE (31 + g % 370) * interval '1 day' END AS t
      FROM generate_series(1, :n) g) x
"""


def _generate(admin_url: str) -> None:
    engine = create_engine(admin_url)
    try:
        with engine.begin() as conn:
            # As the owner, as a migration would: the rows, then statistics.
            conn.execute(text("SET ROLE clearhouse_owner"))
            for start in range(0, N, 200_000):
                size = min(200_000, N - start)
                conn.execute(
                    text(GENERATE.replace("generate_series(1, :n)", "generate_series(:a, :b)")),
                    {"a": start + 1, "b": start + size},
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SET ROLE clearhouse_owner"))
            conn.execute(text("VACUUM ANALYZE payment_intents"))
    finally:
        engine.dispose()


def _plan(engine) -> str:
    with engine.connect() as conn:
        return "\n".join(
            conn.execute(
                text(f"EXPLAIN {retention._PURGE_CARDS.text}"), {"days": DAYS, "n": BATCH}
            ).scalars()
        )


def _counts(engine) -> dict:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE card_token IS NULL),"
                " count(*) FILTER (WHERE card_token IS NOT NULL),"
                " pg_relation_size('ix_intents_card_purge') FROM payment_intents"
            )
        ).one()
    return {"purged": row[0], "holding_token": row[1], "index_bytes": row[2]}


class Probe(threading.Thread):
    """Locks random intents the purge will take, one short transaction each, and times it."""

    def __init__(self, engine, ids: list[str]):
        super().__init__(daemon=True)
        self._engine, self._ids = engine, ids
        self.waits: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rng = random.Random(1)
        while not self.stop.is_set():
            intent_id = rng.choice(self._ids)
            began = time.perf_counter()
            with self._engine.begin() as conn:
                conn.execute(
                    text("SELECT 1 FROM payment_intents WHERE id = :i FOR UPDATE"), {"i": intent_id}
                )
            self.waits.append(time.perf_counter() - began)
            time.sleep(0.005)  # at most 200 locks a second: a busy refund and capture path


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def main() -> int:
    base = os.environ.get("DATABASE_URL", "postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/x")
    name = f"clearhouse_purge_bench_{secrets.token_hex(3)}"
    url = base.rsplit("/", 1)[0] + "/" + name
    admin = (os.environ.get("MIGRATION_DATABASE_URL") or with_user(base)).rsplit("/", 1)[0]
    admin = admin + "/" + name
    upgrade(admin)
    try:
        began = time.perf_counter()
        _generate(admin)
        print(f"generated {N} intents in {time.perf_counter() - began:.1f}s", flush=True)
        settings = Settings()
        engine = get_engine(url, "worker", settings.db_timeouts_worker)
        plan = _plan(engine)
        before = _counts(engine)
        with engine.connect() as conn:
            sample = list(
                conn.execute(
                    text(
                        "SELECT id FROM payment_intents TABLESAMPLE SYSTEM (1)"
                        " WHERE card_token IS NOT NULL AND status <> 'processing'"
                        " AND status <> 'requires_capture'"
                        " AND finalized_at < now() - interval '31 days'"
                    )
                ).scalars()
            )
        probe = Probe(engine, sample)
        probe.start()
        batches: list[float] = []
        purged = 0
        began = time.perf_counter()
        while True:
            started = time.perf_counter()
            with UnitOfWork(engine) as u:
                n = retention.purge_card_data(u, DAYS, BATCH)
                u.commit()
            batches.append(time.perf_counter() - started)
            purged += n
            if n < BATCH:
                break
        elapsed = time.perf_counter() - began
        probe.stop.set()
        probe.join()
        after = _counts(engine)
        summary = {
            "intents": N,
            "batch": BATCH,
            "purged": purged,
            "kept_tokens": after["holding_token"],
            "elapsed_s": round(elapsed, 2),
            "rows_per_s": round(purged / elapsed),
            "batches": len(batches),
            "batch_tx_ms_p50": _ms(batches, 0.5),
            "batch_tx_ms_p99": _ms(batches, 0.99),
            "batch_tx_ms_max": _ms(batches, 1.0),
            "probe_locks": len(probe.waits),
            "probe_wait_ms_p50": _ms(probe.waits, 0.5),
            "probe_wait_ms_p99": _ms(probe.waits, 0.99),
            "probe_wait_ms_max": _ms(probe.waits, 1.0),
            "index_bytes_before": before["index_bytes"],
            "uses_index": "ix_intents_card_purge" in plan and "Seq Scan" not in plan,
            "cpu_count": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(summary))
        ok = summary["uses_index"] and after["holding_token"] == N * 4 // 20
        return 0 if ok else 1
    finally:
        from shared.db.engine import dispose_engines

        dispose_engines()
        if not os.environ.get("BENCH_KEEP_DB"):
            drop_database(admin)


if __name__ == "__main__":
    sys.exit(main())
