"""What one create costs the API: CPU per request, where it goes, statements and round trips.

``python -m tests.load.create_profile`` builds a database of its own on the server of
``DATABASE_URL`` (migrated, dropped at the end), a Redis key prefix of its own on
``REDIS_URL`` (deleted at the end) and one merchant with a webhook URL (so each create
also writes its webhook delivery, as under ``BENCH_WEBHOOKS=1``), then runs the real
app (``intake.app.create_app``: every middleware, rate limits on but never refusing)
in this process through falcon's TestClient. Every request is a fresh card intent
with its own Idempotency-Key, as the bench sends.

- ``cpu_us`` / ``wall_us``: medians over ``PROFILE_RUNS`` runs of ``PROFILE_N``
  creates each, per create (``time.process_time``: this process only, so the
  database's own CPU is not in it);
- ``per_create``: SQL statements (SQLAlchemy ``before_cursor_execute``), transactions
  (each costs a BEGIN and a COMMIT round trip with psycopg2), pool pings; their sum is
  the number of round trips to Postgres; and the statements by kind;
- ``driver_wall_us``: wall time per create inside each kind of statement (the
  round trip and the server's work);
- ``profile``: one more run under cProfile (CPU timer), cumulative CPU by component (middleware,
  resource, validation, each SQL statement, commit), as % of the run and µs/create.
  cProfile slows pure-Python code more than C, so read it for shares, not absolutes.

``broker``: the create path publishes nothing itself (the outbox relay does, after
the trigger's NOTIFY); the webhook delivery's after-commit enqueue goes to a no-op
publisher here, so the broker's cost is not in these figures.
``PROFILE_DETAIL=0`` skips the last two (to compare builds back to back).
Nothing asserts them: figures for the README, not a test.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import secrets
import statistics
import tempfile
import time
from collections import Counter

import falcon.testing
from sqlalchemy import event

N = int(os.environ.get("PROFILE_N") or 1000)
# 0: only the timed runs and counts (comparing builds back to back).
DETAIL = os.environ.get("PROFILE_DETAIL", "1") != "0"
RUNS = int(os.environ.get("PROFILE_RUNS") or 5)
LIMITS = dict(rate_limit_per_ip=1e6, rate_limit_per_client=1e6)

# (label, file suffix, function name): cumulative time of each in the cProfile run.
COMPONENTS = [
    ("RequestId", "intake/middleware.py", "process_request"),
    ("Metrics.response", "intake/metrics.py", "process_response"),
    ("Auth", "intake/middleware.py", "process_resource:127"),
    ("Auth.verify_jwt", "shared/security/signing.py", "verify"),
    ("Parameters", "intake/middleware.py", "process_resource:236"),
    ("JSONBody", "intake/middleware.py", "process_resource:260"),
    ("Console", "intake/console/session.py", "process_resource"),
    ("RateLimit", "intake/ratelimit.py", "process_resource"),
    ("resource.on_post", "intake/resources/intents.py", "on_post"),
    ("validation", "intake/schemas/parse.py", "parse"),
    ("idempotent.run", "intake/idempotent.py", "run"),
    ("request_hash", "shared/services/idempotency.py", "request_hash"),
    ("idempotency.begin", "shared/services/idempotency.py", "begin"),
    ("intents.create", "shared/services/intents.py", "create"),
    ("vault.encrypt", "shared/security/vault.py", "encrypt"),
    ("events.emit", "shared/services/events.py", "emit"),
    ("idempotency.complete", "shared/services/idempotency.py", "complete"),
    ("uow.enter(checkout+ping)", "shared/db/uow.py", "__enter__"),
    ("uow.commit", "shared/db/uow.py", "commit"),
    ("uow.exit", "shared/db/uow.py", "__exit__"),
    ("sqlalchemy Connection.execute", "sqlalchemy/engine/base.py", "execute"),
    ("falcon response media", "falcon/response.py", "render_body"),
]


def statement_kind(sql: str) -> str:
    s = " ".join(sql.split())
    for needle, label in (
        ("idempotency_claim", "idempotency claim (lock, then lookup)"),
        ("pg_try_advisory_xact_lock", "idempotency lock"),
        ("FROM idempotency_keys", "idempotency lookup"),
        ("INSERT INTO idempotency_keys", "idempotency complete"),
        ("INSERT INTO payment_intents", "intent insert"),
        ("INSERT INTO events", "event insert (and its delivery, one statement since)"),
        ("INSERT INTO webhook_deliveries", "delivery insert"),
    ):
        if needle in s:
            return label
    return s[:70]


class Counters:
    """Statements, transactions and pings on ``engine`` (listeners, not sampling)."""

    def __init__(self, engine):
        self.kinds: Counter = Counter()
        self.begins = self.commits = self.pings = 0
        event.listen(engine, "before_cursor_execute", self._stmt)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)
        ping = engine.dialect.do_ping

        def counted_ping(dbapi_conn):
            self.pings += 1
            return ping(dbapi_conn)

        engine.dialect.do_ping = counted_ping

    def _stmt(self, conn, cursor, statement, params, context, executemany):
        self.kinds[statement_kind(statement)] += 1

    def _begin(self, conn):
        self.begins += 1

    def _commit(self, conn):
        self.commits += 1

    def reset(self) -> None:
        self.kinds.clear()
        self.begins = self.commits = self.pings = 0

    def per(self, n: int) -> dict:
        statements = sum(self.kinds.values())
        return {
            "statements": round(statements / n, 2),
            "transactions": round(self.begins / n, 2),
            "commits": round(self.commits / n, 2),
            "pool_pings": round(self.pings / n, 2),
            # psycopg2: BEGIN goes out alone before a transaction's first statement.
            "round_trips": round((statements + self.begins + self.commits + self.pings) / n, 2),
            "by_kind": {k: round(v / n, 2) for k, v in self.kinds.most_common()},
        }


def build():
    import redis

    from intake.app import create_app, redis_client_for
    from shared.config import Settings, with_user
    from shared.db.engine import get_engine
    from shared.db.migrate import upgrade
    from shared.db.uow import UnitOfWork
    from shared.services.merchants import create_merchant

    base_db = os.environ.get(
        "DATABASE_URL", "postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/clearhouse"
    )
    base_admin = os.environ.get("MIGRATION_DATABASE_URL") or with_user(base_db)
    name = f"clearhouse_profile_{secrets.token_hex(4)}"
    db_url = base_db.rsplit("/", 1)[0] + "/" + name
    admin_url = base_admin.rsplit("/", 1)[0] + "/" + name
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"create-profile:{secrets.token_hex(4)}:"
    upgrade(admin_url)
    settings = Settings.from_env(
        database_url=db_url,
        redis_url=redis_url,
        redis_key_prefix=prefix,
        key_dir=tempfile.mkdtemp(prefix="clearhouse-profile-keys-"),
        **LIMITS,
    )
    engine = get_engine(db_url, "api", settings.db_timeouts_api)
    conn = redis_client_for(redis_url)
    app = create_app(settings, engine=engine, redis_client=conn, dispatch=lambda *a, **k: None)
    with UnitOfWork(engine) as u:
        merchant = create_merchant(
            u, _vault(settings), "Profile merchant", "https://hooks.example.com/x", True
        )
        u.commit()
    client = falcon.testing.TestClient(app)
    token = client.simulate_post(
        "/v1/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": merchant["client_id"],
            "client_secret": merchant["client_secret"],
        },
    ).json["access_token"]

    def cleanup() -> None:
        from shared.db.engine import dispose_engines
        from shared.db.migrate import drop_database

        keys = list(redis.Redis.from_url(redis_url).scan_iter(match=prefix + "*"))
        if keys:
            conn.delete(*keys)
        dispose_engines()
        drop_database(admin_url)

    return client, engine, token, cleanup


def _vault(settings):
    from shared.security.vault import Vault

    return Vault.from_settings(settings)


def creator(client, token: str):
    from tests.factories import card_body

    headers = {"Authorization": "Bearer " + token}

    def create() -> None:
        key = "profile-" + secrets.token_hex(8)
        r = client.simulate_post(
            "/v1/payment_intents",
            json=card_body(),
            headers={**headers, "Idempotency-Key": key},
            remote_addr="10.250.0.1",
        )
        if r.status_code != 202:
            raise RuntimeError(f"create: HTTP {r.status_code}: {r.text[:300]}")

    return create


def timed(fn, n: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per call over ``n`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6


def profile_run(create, n: int) -> dict:
    # CPU time, not wall: waiting for Postgres is in driver_wall_us instead.
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for _ in range(n):
        create()
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = max(ct for (_, _, fn), (_, _, _, ct, _) in stats.items() if fn == "create")
    out = {}
    for label, suffix, func in COMPONENTS:
        name, _, line = func.partition(":")
        cum = sum(
            ct
            for (file, lineno, fn), (_, _, _, ct, _) in stats.items()
            if file.endswith(suffix) and fn == name and (not line or lineno == int(line))
        )
        out[label] = {"pct": round(100 * cum / total, 1), "us": round(cum / n * 1e6, 1)}
    return out


def statement_times(engine, create, n: int) -> dict:
    """Wall µs per create in each kind of statement, from SQLAlchemy's execute events."""
    spent: Counter = Counter()

    def before(conn, cursor, statement, params, context, executemany):
        context._profile_t0 = time.perf_counter()

    def after(conn, cursor, statement, params, context, executemany):
        spent[statement_kind(statement)] += time.perf_counter() - context._profile_t0

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        for _ in range(n):
            create()
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    return {k: round(v / n * 1e6, 1) for k, v in spent.most_common()}


def main() -> None:
    client, engine, token, cleanup = build()
    try:
        create = creator(client, token)
        counters = Counters(engine)
        for _ in range(200):  # warm up: pool, caches, the revocation and suspension lists
            create()
        counters.reset()
        samples = [timed(create, N) for _ in range(RUNS)]
        out = {
            "cpu_us": round(statistics.median(c for _, c in samples), 1),
            "wall_us": round(statistics.median(w for w, _ in samples), 1),
            "cpu_us_runs": [round(c, 1) for _, c in samples],
            "per_create": counters.per(N * RUNS),
            "n": N,
            "runs": RUNS,
        }
        if DETAIL:
            out["driver_wall_us"] = statement_times(engine, create, N)
            out["profile"] = profile_run(create, N)
    finally:
        cleanup()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
