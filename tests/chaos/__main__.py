"""The chaos suite: ``python -m tests.chaos`` (``make chaos``; ``CHAOS_SHORT=1`` in make test).

Starts private Postgres and Redis, every Procfile process under a restart
loop, a signature-checking webhook receiver and open-loop load; injects
faults on a seeded schedule; drains; audits. The last stdout line is one
JSON object; the exit status is 1 on any breach.

Settings (environment): CHAOS_SEED (replay a schedule), CHAOS_SHORT=1 (the
short run: three faults, about two minutes), CHAOS_RATE (intents/s offered),
CHAOS_DURATION_S (seconds of load), CHAOS_FAULTS (comma-separated kinds),
CHAOS_GAP_S (min,max seconds between faults), CHAOS_MERCHANTS.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.chaos import audit, faults
from tests.chaos.load import Load
from tests.chaos.stack import Stack
from tests.support.receiver import Receiver
from tests.support.services import free_port


def _config() -> dict:
    short = os.environ.get("CHAOS_SHORT", "") not in ("", "0")
    kinds = faults.SHORT if short else faults.ALL
    if os.environ.get("CHAOS_FAULTS"):
        kinds = tuple(k.strip() for k in os.environ["CHAOS_FAULTS"].split(",") if k.strip())
    gap = (12.0, 18.0) if short else (25.0, 40.0)
    if os.environ.get("CHAOS_GAP_S"):
        lo, hi = (float(x) for x in os.environ["CHAOS_GAP_S"].split(","))
        gap = (lo, hi)
    warmup = 10.0
    default_duration = warmup + gap[1] * len(kinds) + 10
    return {
        "seed": int(os.environ.get("CHAOS_SEED") or secrets.randbelow(2**31)),
        "short": short,
        "kinds": kinds,
        "gap": gap,
        "warmup": warmup,
        # Below the machine's capacity, with room to drain what the faults held
        # back: the suite judges recovery, not throughput (make bench does). On
        # the 2-core machine this runs on, the whole stack with webhooks completes
        # about 34 intents/s at saturation, so 40/s never drained, whatever the
        # faults (drained_per_s in the result tells); a bigger one can offer more.
        "rate": float(os.environ.get("CHAOS_RATE") or 20),
        "duration": float(os.environ.get("CHAOS_DURATION_S") or default_duration),
        "merchants": int(os.environ.get("CHAOS_MERCHANTS") or 4),
    }


def _say(msg: str) -> None:
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


def _merchants(stack: Stack, receiver_port: int, n: int) -> list[dict]:
    os.environ.update({k: stack.env[k] for k in ("DATABASE_URL", "CLEARHOUSE_KEY_DIR")})
    from shared.config import Settings
    from shared.db.engine import get_engine
    from shared.db.uow import UnitOfWork
    from shared.security.vault import Vault
    from shared.services import merchants

    settings = Settings.from_env()
    vault = Vault.from_settings(settings)
    out = []
    engine = get_engine(stack.env["DATABASE_URL"], "worker", settings.db_timeouts_worker)
    with UnitOfWork(engine) as u:
        for i in range(n):
            url = f"http://127.0.0.1:{receiver_port}/hooks/{i}"
            out.append(merchants.create_merchant(u, vault, f"chaos {i}", url, allow_private=True))
        u.commit()
    return out


def _token(api: str, m: dict) -> str:
    r = requests.post(
        api + "/v1/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": m["client_id"],
            "client_secret": m["client_secret"],
        },
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["access_token"]


def run(cfg: dict, rundir: Path) -> dict:
    stack = Stack(rundir, {})
    receiver = None
    load = None
    try:
        stack.start_services()
        stack.start_processes()
        receiver_port = free_port()
        merchants = _merchants(stack, receiver_port, cfg["merchants"])
        receiver = Receiver([m["webhook_secret"] for m in merchants], receiver_port).start()
        tokens = {m["merchant_id"]: _token(stack.api, m) for m in merchants}
        plan = faults.schedule(cfg["seed"], cfg["kinds"], cfg["warmup"], cfg["gap"])
        _say("schedule " + ", ".join(f"{f.at_s}s {f.name}" for f in plan))

        load = Load(stack.api, tokens, cfg["rate"], cfg["seed"])
        t0 = time.time()
        load.start()
        for f in plan:
            time.sleep(max(0.0, t0 + f.at_s - time.time()))
            _say(f"{time.time() - t0:6.1f}s inject {f.name}")
            faults.inject(f, stack, receiver)
        time.sleep(max(0.0, t0 + cfg["duration"] - time.time()))
        _say(f"{time.time() - t0:6.1f}s load stops; clients finish their retries")
        load.stop()
        return _audit(cfg, stack, receiver, load, plan)
    finally:
        if receiver is not None:
            receiver.stop()
        stack.stop()


def _audit(cfg, stack, receiver, load, plan) -> dict:
    from shared.config import Settings
    from shared.db.engine import get_engine

    engine = get_engine(stack.env["DATABASE_URL"], "worker", Settings().db_timeouts_worker)
    last_fault = max(f.ended for f in plan) if plan else time.time()
    redrive_after = float(stack.env["REDRIVE_AFTER_S"])
    deadline = max(last_fault + redrive_after + 60, time.time() + 15)
    with engine.connect() as conn:
        accepted = audit.accepted_ids(conn, load)
        backlog = audit.not_final(conn, accepted)
    _say(f"draining {len(accepted)} accepted intents ({backlog} not final yet)")
    drain_started = time.time()
    stuck, lost = audit.wait_final(engine, accepted, deadline)
    drain_s = time.time() - drain_started
    undelivered = audit.wait_delivered(engine, receiver, max(deadline, time.time() + 30))
    with engine.begin() as conn:
        books = audit.money(conn)
    by_fault, http_breaches = audit.http_errors(load, plan)
    client_dups = sum(1 for o in load.outcomes if len(o.ids_seen) > 1)
    rejected = Counter_str(o.status for o in load.outcomes if o.status and 400 <= o.status < 500)
    gave_up = sum(1 for o in load.outcomes if o.intent_id is None)
    restarts = {name: {"kills": p.kills, "restarts": p.restarts} for name, p in stack.procs.items()}
    result = {
        "seed": cfg["seed"],
        "short": cfg["short"],
        "rate": cfg["rate"],
        "offered": len(load.outcomes),
        "accepted": len(accepted),
        "final": len(accepted) - len(stuck) - len(lost),
        "stuck": len(stuck),
        "stuck_ids": stuck[:10],
        # Whether the machine could carry the load: what was left when the load
        # stopped, and how fast it went. Stuck intents with a steady drain rate
        # mean the offered rate was above this machine's capacity (CHAOS_RATE);
        # a drain rate near 0 means the pipeline stopped.
        "backlog_at_load_end": backlog,
        "drained_per_s": round((backlog - len(stuck)) / drain_s, 1) if drain_s > 0 else None,
        "lost": len(lost),
        "lost_ids": lost[:10],
        "gave_up": gave_up,
        "rejected_4xx": rejected,
        "duplicate_intents": books["duplicate_intents"] + client_dups,
        "double_captures": books["double_captures"],
        "over_received": books["over_received"],
        "processing_errors": books["processing_errors"],
        "discrepancies": books["discrepancies"],
        "discrepancy_samples": books["discrepancy_samples"],
        "ledger_verify_exit": audit.ledger_verify(stack.env),
        "events": len(receiver.ids()),
        "undelivered_events": len(undelivered),
        "bad_signatures": receiver.rejected,
        "http_errors_by_fault": by_fault,
        "http_breaches": http_breaches[:10],
        "restarts": restarts,
        "recovery_s": audit.recovery(engine, plan),
        "statuses": books["statuses"],
    }
    result["breaches"] = breaches(result)
    return result


def Counter_str(values) -> dict:  # noqa: N802
    from collections import Counter

    return {str(k): v for k, v in Counter(values).items()}


def breaches(r: dict) -> list[str]:
    out = []
    checks = {
        "stuck": "intents not final",
        "lost": "accepted intents missing from Postgres",
        "duplicate_intents": "more than one intent for a key",
        "double_captures": "intents captured twice",
        "over_received": "amount_received above amount",
        "processing_errors": "payments failed with processing_error",
        "discrepancies": "reconciliation discrepancies",
        "undelivered_events": "events never delivered",
        "bad_signatures": "deliveries with a bad signature",
        "gave_up": "requests never answered",
    }
    for field, what in checks.items():
        if r[field]:
            out.append(f"{r[field]} {what}")
    if r["rejected_4xx"]:
        out.append(f"client errors: {r['rejected_4xx']}")
    if r["ledger_verify_exit"] != 0:
        out.append(f"clearhouse ledger verify exited {r['ledger_verify_exit']}")
    out.extend(r["http_breaches"])
    for name, c in r["restarts"].items():
        if c["restarts"] > c["kills"]:
            out.append(f"{name} restarted {c['restarts']} times, killed {c['kills']}")
    return out


def main() -> int:
    cfg = _config()
    rundir = Path(tempfile.mkdtemp(prefix="clearhouse-chaos-"))
    rundir.chmod(0o755)  # Postgres runs as its own user and must reach its data folder
    _say(f"seed {cfg['seed']} (CHAOS_SEED={cfg['seed']} replays it); logs in {rundir}")
    result = run(cfg, rundir)
    result["logs"] = str(rundir)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 1 if result["breaches"] else 0


if __name__ == "__main__":
    sys.exit(main())
