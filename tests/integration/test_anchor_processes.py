"""Anchoring across real processes: clearhouse-devchain, the CLI, a Celery worker and beat."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest
from eth_account import Account
from sqlalchemy import text

from shared.services import seals
from tests.conftest import free_port, python_bin
from tests.support import processes
from tests.support.sealed import DAY1, DAY2, DAY3, cli, populate, rewrite_history
from tests.support.testchain import DEV_CHAIN_ID, devchain, devchain_env
from tests.support.units import bound
from tests.support.waiting import until

pytestmark = pytest.mark.integration


def _sealed(engine) -> dict:
    ids = populate(engine)
    with engine.begin() as conn:
        seals.seal_day(bound(conn), DAY3)
    return ids


def _mined(engine) -> int:
    return _anchored(engine, "block_number IS NOT NULL")


def _anchored(engine, where: str = "true") -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM ledger_anchors WHERE {where}")).scalar()


def test_the_cli_anchors_verifies_and_names_the_first_rewritten_seal(ledger_db):
    url, engine, admin = ledger_db
    ids = _sealed(engine)
    off = cli(url, "ledger", "verify", "--anchors", env={"ANCHOR_RPC_URL": ""})
    assert off.returncode == 2 and off.stdout == "", off
    assert off.stderr == "clearhouse: error: ledger anchoring is off: ANCHOR_RPC_URL is not set\n"
    env = devchain_env()
    with devchain(env):
        waiting = cli(url, "ledger", "verify", "--anchors", env=env)
        assert waiting.returncode == 0, waiting
        assert f"not anchored yet: {DAY1}, {DAY2}, {DAY3}" in waiting.stdout

        sent = cli(url, "ledger", "anchor", "--json", env=env)
        assert json.loads(sent.stdout)["sent"] == [str(d) for d in (DAY1, DAY2, DAY3)], sent
        mined = cli(url, "ledger", "anchor", env=env)
        assert f"mined: {DAY1}, {DAY2}, {DAY3}" in mined.stdout, mined
        idle = cli(url, "ledger", "anchor", "--json", env=env)
        assert json.loads(idle.stdout) == {"sent": [], "resent": [], "mined": [], "busy": False}
        with engine.connect() as conn:
            audited = conn.execute(
                text("SELECT actor, target, after FROM audit_log WHERE action = 'ledger.anchor'")
            ).all()
        days = [str(d) for d in (DAY1, DAY2, DAY3)]
        assert [(a.target, a.after["sent"], a.after["mined"]) for a in audited] == [
            ("ledger", days, []),
            ("ledger", [], days),
        ]  # a run that did nothing writes no row
        assert all(a.actor.startswith("cli:") for a in audited)

        ok = cli(url, "ledger", "verify", "--anchors", env=env)
        assert ok.returncode == 0, ok
        assert ok.stdout.strip() == (
            f"OK: 3 seals, 5 entries verified, 1 not sealed yet;"
            f" 3 of 3 anchored, each matching chain {DEV_CHAIN_ID}"
        )

        rewrite_history(admin, "DELETE FROM ledger_transfers WHERE id = :i", DAY3, i=ids["d1_a"])
        assert cli(url, "ledger", "verify", env=env).returncode == 0  # the database alone
        bad = cli(url, "ledger", "verify", "--anchors", env=env)
        assert bad.returncode == 1, bad
        lines = bad.stdout.splitlines()
        assert lines[0].startswith(f"seal {DAY1}: the chain holds ")
        assert lines[-1] == f"FAILED: the first seal that differs from its anchor is {DAY1}"
        as_json = cli(url, "ledger", "verify", "--anchors", "--json", env=env)
        out = json.loads(as_json.stdout)
        assert as_json.returncode == 1 and out["ok"] is False
        assert (out["first_difference"], out["anchored"], out["unanchored"]) == (str(DAY1), 3, [])
        assert len(out["problems"]) == 3 and out["problems"][0] == lines[0]

        wrong = cli(url, "ledger", "verify", "--anchors", env={**env, "ANCHOR_CHAIN_ID": "5"})
        assert wrong.returncode == 2 and wrong.stdout == "", wrong
        assert wrong.stderr == (
            f"clearhouse: error: ANCHOR_CHAIN_ID is 5 but ANCHOR_RPC_URL is chain"
            f" {DEV_CHAIN_ID}: refusing to sign for another chain\n"
        )
    away = cli(url, "ledger", "verify", "--anchors", env=env)  # the devchain has stopped
    assert away.returncode == 2, away
    assert away.stderr.startswith("clearhouse: error: cannot reach ANCHOR_RPC_URL")


def test_beat_anchors_every_seal_once_the_node_answers(ledger_db):
    # Sealing never waits for the chain: the days are sealed while no node
    # listens, the beat job fails run after run, and anchors once one does.
    url, engine, _ = ledger_db
    _sealed(engine)
    env = devchain_env()
    env |= {
        "DATABASE_URL": url,
        "BROKER_URL": "",
        # Queues and beat's lock of their own: no other test's worker takes these jobs.
        "REDIS_KEY_PREFIX": f"anchor-{secrets.token_hex(4)}:",
        "ANCHOR_INTERVAL_S": "0.5",
        "ANCHOR_TIMEOUT_S": "2",
        "BEAT_LOCK_TIMEOUT_S": "3",
    }
    worker = processes.celery_worker("anchor", queues="maintenance", pool="solo", env=env)
    with worker, processes.celery_beat(env):
        until(
            lambda: "cannot reach ANCHOR_RPC_URL" in worker.output(),
            timeout=60,
            what="a failed anchoring run",
        )
        assert _mined(engine) == 0
        with devchain(env):
            until(lambda: _mined(engine) == 3, timeout=60, what="three anchors mined")
            ok = cli(url, "ledger", "verify", "--anchors", env=env)
    assert ok.returncode == 0 and "3 of 3 anchored, each matching" in ok.stdout, ok


def test_make_runs_processes_anchor_on_the_devchain_it_starts(ledger_db, tmp_path):
    # deploy/dev/run.sh as `make run` calls it, honcho starting three of its processes:
    # with no ANCHOR_RPC_URL it adds the devchain, makes a key and points ANCHOR_* there.
    url, engine, _ = ledger_db
    _sealed(engine)
    port = free_port()
    env = {
        "DATABASE_URL": url,
        "BROKER_URL": "",
        "REDIS_KEY_PREFIX": f"anchor-run-{secrets.token_hex(4)}:",
        "CLEARHOUSE_KEY_DIR": str(tmp_path / "keys"),
        "METRICS_DIR": str(tmp_path / "metrics"),
        "WORKER_METRICS_PORT": str(free_port()),
        "DEVCHAIN_PORT": str(port),
        "ANCHOR_INTERVAL_S": "0.5",
        "BEAT_LOCK_TIMEOUT_S": "3",
        "BIN": python_bin(""),
        # Set: run.sh makes no development certificates (the API is not started).
        "TLS_CERT_FILE": str(tmp_path / "unused.pem"),
        "TLS_KEY_FILE": str(tmp_path / "unused-key.pem"),
    }
    run = ["bash", "deploy/dev/run.sh", "devchain", "worker_background", "beat"]
    with processes.Process("make-run", run, env) as stack:
        until(lambda: _mined(engine) == 3, timeout=90, what=lambda: stack.output()[-3000:])
    key = (tmp_path / "keys/anchor-dev.key").read_text().strip()
    assert (tmp_path / "keys/anchor-dev.key").stat().st_mode & 0o077 == 0
    with engine.connect() as conn:
        senders = conn.execute(text("SELECT DISTINCT sender, chain_id FROM ledger_anchors")).all()
    assert senders == [(Account.from_key(key).address, DEV_CHAIN_ID)]
    assert f"devchain: chain {DEV_CHAIN_ID} on http://127.0.0.1:{port}" in stack.output()


def test_the_daily_report_that_seals_sends_the_anchors_at_once(ledger_db):
    # No beat here: the report job itself, once its seal committed, enqueues the
    # anchoring job, so a day's anchor leaves minutes after its seal, not a beat later.
    url, engine, _ = ledger_db
    populate(engine)
    env = devchain_env() | {
        "DATABASE_URL": url,
        "BROKER_URL": "",
        "REDIS_KEY_PREFIX": f"anchor-report-{secrets.token_hex(4)}:",
    }
    call = [python_bin("celery"), "-A", "workers.celery_app", "call"]
    call += ["clearhouse.scheduler.daily_report", "--args", json.dumps([str(DAY3)])]
    with devchain(env), processes.celery_worker("anchor", "maintenance", "solo", env=env):
        sent = subprocess.run(call, env={**os.environ, **env}, capture_output=True, timeout=60)
        assert sent.returncode == 0, sent
        until(lambda: _anchored(engine) == 3, timeout=60, what="three anchors sent")
        assert _mined(engine) == 0  # recorded as mined by the next run (beat's)
