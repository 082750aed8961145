"""Key rotation on a running system: the real CLI, gunicorn, a Celery worker, beat and the relay.

The module's processes have a key folder, database and Redis key prefix of
their own (rotating the session's keys would change every other test's), so
``keys status`` counts exactly this module's rows. Tokens live 15 s and the
processes look for new key files every second: a retired JWT key's window is
15 + 1 + 5 s of clock slack.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile

import jwt
import pytest
import requests
from sqlalchemy import func, select

from shared.db.tables import merchants, payment_intents, webhook_endpoints
from tests import factories as f
from tests.conftest import free_port, python_bin
from tests.support import processes
from tests.support.scratchdb import scratch_database
from tests.support.waiting import until

pytestmark = pytest.mark.integration

TOKEN_TTL_S = 15
WINDOW_S = TOKEN_TTL_S + 1 + 5


@pytest.fixture(scope="module")
def stack():
    """Its own database, key folder and Redis prefix; gunicorn (2 workers) and a worker on them."""
    with scratch_database("clearhouse_keys") as (url, engine):
        env = {
            "DATABASE_URL": url,
            "CLEARHOUSE_KEY_DIR": tempfile.mkdtemp(prefix="clearhouse-rotation-keys-"),
            "REDIS_KEY_PREFIX": f"keys_{secrets.token_hex(4)}:",
            "KEY_RELOAD_INTERVAL_S": "1",
            "ACCESS_TOKEN_TTL_S": str(TOKEN_TTL_S),
            "REENCRYPT_INTERVAL_S": "1",
            "REENCRYPT_BATCH": "3",  # several batches, so the pass goes on across runs
            # No re-drive: intents wait in the outbox until the test starts the relay.
            "REDRIVE_AFTER_S": "3600",
            # The test mints tokens six at a time while it waits for the new key: the
            # token endpoint's limits (10/s per client, 20/s per IP) are not under test.
            "RATE_LIMIT_TOKEN_PER_CLIENT": "1000",
            "RATE_LIMIT_TOKEN_PER_IP": "1000",
        }
        assert cli(env, "keys", "init").returncode == 0
        port = free_port()
        api = processes.gunicorn(port, workers=2, env=env)
        worker = processes.celery_worker("keys", pool="solo", concurrency=1, env=env, track=False)
        try:
            yield {"env": env, "url": f"http://127.0.0.1:{port}", "engine": engine}
        finally:
            worker.stop()
            api.stop()


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    """The real ``clearhouse`` command with the stack's settings."""
    return subprocess.run(
        [python_bin("clearhouse"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def ok_json(env: dict, *args: str) -> dict:
    out = cli(env, *args, "--json")
    assert out.returncode == 0 and out.stderr == "", (args, out)
    return json.loads(out.stdout)


def refused(env: dict, *args: str) -> str:
    out = cli(env, *args)
    assert (out.returncode, out.stdout) == (1, ""), (args, out)
    assert out.stderr.startswith("clearhouse: error: "), out.stderr
    return out.stderr


def token(stack, merchant) -> str:
    return f.access_token(stack["url"], merchant)


def kid(access_token: str) -> str:
    return jwt.get_unverified_header(access_token)["kid"]


def jwks_kids(stack) -> set[str]:
    return {k["kid"] for k in requests.get(stack["url"] + "/.well-known/jwks.json").json()["keys"]}


def accepted_by_every_process(stack, access_token: str) -> bool:
    # A new connection per request: gunicorn's two workers both answer some.
    headers = {"Authorization": f"Bearer {access_token}"}
    answers = [
        requests.get(stack["url"] + "/v1/payment_intents?limit=1", headers=headers, timeout=10)
        for _ in range(12)
    ]
    return all(r.status_code == 200 for r in answers)


def test_rotate_jwt_keeps_old_tokens_working_signs_with_the_new_kid_then_drops_the_old(stack):
    env = stack["env"]
    merchant = ok_json(env, "merchant", "create", "--name", "jwt rotation")
    old_token = token(stack, merchant)
    old_kid = kid(old_token)

    rotated = ok_json(env, "keys", "rotate-jwt")
    assert rotated["retired_kids"] == [old_kid] and rotated["kid"] != old_kid
    assert accepted_by_every_process(stack, old_token)

    # Every API process signs with the new key once it has looked at the files
    # (each every second): then six tokens in a row, from both, carry it.
    def signed_with_new_key():
        tokens = [token(stack, merchant) for _ in range(6)]
        return tokens[-1] if {kid(t) for t in tokens} == {rotated["kid"]} else None

    new_token = until(signed_with_new_key, timeout=10, what="tokens signed with the new key")
    assert accepted_by_every_process(stack, new_token)
    assert jwks_kids(stack) == {old_kid, rotated["kid"]}
    status = {k["kid"]: k for k in ok_json(env, "keys", "status")["jwt"]["keys"]}
    assert status[old_kid]["state"] == "verifying" and status[old_kid]["retired_at"]
    assert status[rotated["kid"]]["state"] == "signing"

    until(lambda: jwks_kids(stack) == {rotated["kid"]}, timeout=WINDOW_S + 10, what="old kid gone")
    status = {k["kid"]: k["state"] for k in ok_json(env, "keys", "status")["jwt"]["keys"]}
    assert status == {old_kid: "expired", rotated["kid"]: "signing"}
    assert accepted_by_every_process(stack, token(stack, merchant))


def versions_of(engine, ids) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(payment_intents.c.id, payment_intents.c.card_token).where(
                payment_intents.c.id.in_(ids)
            )
        )
        return {i: t.partition(":")[0] for i, t in rows}


def rows_under(engine, version: str) -> int:
    prefix = f"{version}:"
    with engine.connect() as conn:
        intents = conn.execute(
            select(func.count()).where(func.starts_with(payment_intents.c.card_token, prefix))
        ).scalar_one()
        secrets_ = sum(
            conn.execute(select(func.count()).where(func.starts_with(column, prefix))).scalar_one()
            for column in (
                merchants.c.webhook_secret_enc,
                webhook_endpoints.c.secret_enc,
                webhook_endpoints.c.secret_prev_enc,
            )
        )
    return intents + secrets_


def status_rows(env: dict) -> dict[str, int]:
    return {v["version"]: v["rows"] for v in ok_json(env, "keys", "status")["card"]["versions"]}


def test_rotate_card_reencrypts_every_row_online_then_retire_card_removes_the_old_version(stack):
    env, engine = stack["env"], stack["engine"]
    merchant = ok_json(env, "merchant", "create", "--name", "card rotation")

    def post(path: str, body: dict | None = None):
        # A token per call: they live 15 s, and the test outlasts that.
        headers = {"Authorization": f"Bearer {token(stack, merchant)}"}
        return requests.post(stack["url"] + path, json=body, headers=headers, timeout=10)

    def create(**extra) -> str:
        r = post("/v1/payment_intents", f.card_body(**extra))
        assert r.status_code == 202, r.text
        return r.json()["id"]

    # Before: under v1, waiting in the outbox (no relay yet), one of them manual.
    before = [create() for _ in range(5)] + [create(capture_method="manual")]
    assert set(versions_of(engine, before).values()) == {"v1"}
    assert status_rows(env)["v1"] == rows_under(engine, "v1") > len(before)
    assert "is the current one" in refused(env, "keys", "retire-card", "--version", "1")

    rotated = ok_json(env, "keys", "rotate-card")
    assert rotated == {"current_version": "v2", "versions": ["v1", "v2"]}
    # Beat is not running yet: nothing is re-encrypted, so retiring v1 is refused.
    message = refused(env, "keys", "retire-card", "--version", "v1")
    assert f"{rows_under(engine, 'v1')} rows still use card key v1" in message
    # Every API process encrypts under v2 within the reload interval.
    until(
        lambda: set(versions_of(engine, [create() for _ in range(4)]).values()) == {"v2"},
        timeout=10,
        what="new intents encrypted under v2 by every API process",
    )

    with processes.celery_beat(env):
        until(lambda: rows_under(engine, "v1") == 0, timeout=60, what="no row left under v1")
    assert status_rows(env) == {"v1": 0, "v2": rows_under(engine, "v2")}

    # The re-encrypted intents still decrypt: the worker authorizes them, and
    # the held one is captured.
    with processes.relay(env):
        rows = f.wait_until_final(engine, before, timeout=60)
        assert {rows[i].status for i in before[:-1]} == {"succeeded"}
        assert rows[before[-1]].status == "requires_capture"
        r = post(f"/v1/payment_intents/{before[-1]}/capture")
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text

        assert ok_json(env, "keys", "retire-card", "--version", "1") == {
            "retired_version": "v1",
            "versions": ["v2"],
        }
        assert status_rows(env) == {"v2": rows_under(engine, "v2")}
        after = create()
        assert f.wait_until_final(engine, [after], timeout=30)[after].status == "succeeded"


def test_production_without_keys_refuses_to_start_naming_the_setting(stack):
    env = {
        **stack["env"],
        "CLEARHOUSE_ENV": "production",
        "CLEARHOUSE_KEY_DIR": tempfile.mkdtemp(prefix="clearhouse-no-keys-"),
    }
    with pytest.raises(RuntimeError, match="no JWT signing key: with CLEARHOUSE_ENV=production"):
        processes.gunicorn(free_port(), workers=1, env=env).stop()
    with pytest.raises(RuntimeError, match="no card encryption keys: .* set CARD_KEYS"):
        processes.celery_worker("no-keys", pool="solo", env=env, track=False).stop()
    assert "no card encryption keys" in refused(env, "merchant", "create", "--name", "x")
    assert os.listdir(env["CLEARHOUSE_KEY_DIR"]) == []  # nothing was generated

    created = ok_json(env, "keys", "init")  # how production gets its first keys
    assert created["jwt"].startswith("created ") and created["card"] == "created v1"
    # The operator ring too, with a key of its own.
    assert created["operator_jwt"].startswith("created ")
    assert created["operator_jwt"] != created["jwt"]
    with processes.gunicorn(free_port(), workers=1, env=env) as api:
        assert api.proc.poll() is None
