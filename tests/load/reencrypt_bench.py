"""How fast the re-encrypt job moves card data to a new key (``make bench-reencrypt``).

Builds a fresh database with REENCRYPT_BENCH_INTENTS intents (default 100,000)
whose card tokens are real AES-GCM ciphertexts under v1, rotates to v2, then
times a whole pass twice:

- ``in_process``: ``card_data.reencrypt_batch`` in a loop, one transaction per
  batch (REENCRYPT_BATCH rows, default 500): the database and crypto cost;
- ``worker``: the real beat task on a real Celery worker (solo pool), each
  batch one message that sends the next: what the system does in production.

Between the two the rows are put back under v1. The last stdout line is one
JSON object: rows/s of each.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, text, update

N = int(os.environ.get("REENCRYPT_BENCH_INTENTS", "100000"))
BATCH = int(os.environ.get("REENCRYPT_BATCH", "500"))
BASE = os.environ.get("DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/x")
URL = BASE.rsplit("/", 1)[0] + f"/clearhouse_reencrypt_bench_{secrets.token_hex(3)}"
KEY_DIR = tempfile.mkdtemp(prefix="clearhouse-reencrypt-bench-")
# The worker and this process share them (settings are read from here).
os.environ.update(
    DATABASE_URL=URL,
    CLEARHOUSE_KEY_DIR=KEY_DIR,
    REDIS_KEY_PREFIX=f"reencrypt_bench_{secrets.token_hex(3)}:",
    KEY_RELOAD_INTERVAL_S="0.5",
    REENCRYPT_BATCH=str(BATCH),
    LOG_LEVEL="WARNING",
)

from shared.config import Settings  # noqa: E402
from shared.db.engine import dispose_engines, get_engine  # noqa: E402
from shared.db.migrate import drop_database, upgrade  # noqa: E402
from shared.db.tables import merchants, payment_intents  # noqa: E402
from shared.db.uow import UnitOfWork, transact  # noqa: E402
from shared.security import card_ring, keyfiles  # noqa: E402
from shared.security.vault import Vault  # noqa: E402
from shared.services import card_data, keys  # noqa: E402


def _generate(engine, vault: Vault) -> None:
    with engine.begin() as conn:
        conn.execute(insert(merchants).values(id="mch_bench", name="bench", webhook_secret_enc="x"))
        for start in range(0, N, 10_000):
            rows = [
                {
                    "id": f"pi_{i:024x}",
                    "merchant_id": "mch_bench",
                    "amount": 1000,
                    "currency": "USD",
                    "status": "succeeded",
                    "stage": "authorized",
                    "capture_method": "automatic",
                    "priority": "standard",
                    "pm_type": "card",
                    "payer_key": f"payer_{i % 5000}",
                    "card_token": vault.encrypt("4242424242424242", aad=f"pi_{i:024x}"),
                }
                for i in range(start, min(N, start + 10_000))
            ]
            conn.execute(insert(payment_intents), rows)
        conn.execute(
            update(merchants).values(webhook_secret_enc=vault.encrypt("whsec", aad="mch_bench"))
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE payment_intents"))


def _left(engine, version: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(
                func.starts_with(payment_intents.c.card_token, f"{version}:")
            )
        ).scalar_one()


def _in_process(engine, vault: Vault) -> float:
    began = time.perf_counter()
    for table in card_data.TABLES:
        after = None
        while True:
            batch = transact(
                lambda: UnitOfWork(engine), card_data.reencrypt_batch, vault, table, after, BATCH
            )
            after = batch.next_after
            if after is None:
                break
    return time.perf_counter() - began


def _through_the_worker(engine) -> float:
    from tests.support import processes
    from workers.celery_app import app

    with processes.celery_worker("bench", queues="maintenance", pool="solo", track=False):
        began = time.perf_counter()
        app.send_task("clearhouse.scheduler.reencrypt_card_data", queue="maintenance")
        while _left(engine, "v2") < N:
            time.sleep(0.2)  # polling interval
        return time.perf_counter() - began


def main() -> int:
    settings = Settings.from_env()
    upgrade(URL)
    # The workers' engine (its executemany mode batches the UPDATEs).
    engine = get_engine(URL, "worker", settings.db_timeouts_worker)
    try:
        now = datetime.now(UTC)
        keys.init(settings, now)
        v1 = Vault.from_settings(settings)
        began = time.perf_counter()
        _generate(engine, v1)
        print(f"generated {N} intents under v1 in {time.perf_counter() - began:.1f}s")
        keys.rotate_card(settings, now)
        v1._source.refresh()
        assert v1.current_version == "v2"
        in_process = _in_process(engine, v1)
        assert _left(engine, "v1") == 0
        print(f"in process: {N} rows in {in_process:.2f}s ({N / in_process:.0f} rows/s)")
        # Back under v1 for the worker's pass: a vault whose current key is v1.
        ring = card_ring.parse(keyfiles.read(KEY_DIR, card_ring.KEY_FILE))
        backwards = Vault({"v2": ring.keys["v2"], "v1": ring.keys["v1"]}, ring.fingerprint_key)
        _in_process(engine, backwards)
        assert _left(engine, "v2") == 0
        worker = _through_the_worker(engine)
        print(f"worker: {N} rows in {worker:.2f}s ({N / worker:.0f} rows/s)")
        summary = {
            "intents": N,
            "batch": BATCH,
            "in_process_rows_per_s": round(N / in_process),
            "worker_rows_per_s": round(N / worker),
        }
        print(json.dumps(summary))
    finally:
        dispose_engines()
        drop_database(URL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
