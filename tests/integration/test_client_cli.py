"""``clearhouse client ...`` through the real CLI process, on the layer's database; what each
command made is used through the falcon app in-process (a token, refused or granted).

A bad argument gives one line on stderr and a non-zero exit (2 for usage errors, 1 for
errors of the command), and changes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import falcon.testing
import pytest
from sqlalchemy import func, select

from intake.app import create_app
from shared.db.tables import api_clients
from shared.domain.scopes import ALL_SCOPES
from shared.security.signing import SigningKeys
from tests.support.apiclient import OwnAddressClient
from tests.support.clirun import cli, ok_json, refused

pytestmark = pytest.mark.integration

FINGERPRINT = ":".join(["A1"] * 32)


@pytest.fixture
def api(settings, engine, vault):
    app = create_app(
        settings,
        engine=engine,
        dispatch=lambda *a, **k: None,
        keys=SigningKeys.from_settings(settings),
        vault=vault,
    )
    return OwnAddressClient(app)


def token(api, client_id: str, secret: str) -> falcon.testing.Result:
    return api.simulate_post(
        "/v1/oauth/token",
        json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def clients_of(engine, merchant_id: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(api_clients).where(api_clients.c.merchant_id == merchant_id)
        ).all()


def test_client_create_gives_a_client_with_its_scopes_and_fingerprint(api, make_merchant, engine):
    mid = make_merchant()["merchant_id"]
    made = ok_json(
        "client", "create", "--merchant", mid, "--scopes", "refunds:read,balance:read",
        "--cert-sha256", FINGERPRINT,
    )  # fmt: skip
    assert set(made) == {"merchant_id", "client_id", "client_secret", "scopes", "cert_sha256"}
    assert made["merchant_id"] == mid and made["client_secret"].startswith("cs_")
    assert made["scopes"] == ["refunds:read", "balance:read"]
    assert made["cert_sha256"] == "a1" * 32  # stored as 64 lower-case hex digits
    # Bound: without its certificate it gets no token (test_tls.py has it over TLS).
    bound = token(api, made["client_id"], made["client_secret"])
    assert bound.status_code == 401 and bound.json["code"] == "invalid_client", bound.text
    unbound = ok_json(
        "client", "create", "--merchant", mid, "--scopes", "refunds:read,balance:read"
    )
    granted = token(api, unbound["client_id"], unbound["client_secret"])
    assert granted.status_code == 200 and granted.json["scope"] == "refunds:read balance:read"
    (row,) = [r for r in clients_of(engine, mid) if r.client_id == made["client_id"]]
    assert row.cert_sha256 == "a1" * 32 and made["client_secret"] not in row.secret_hash

    every = ok_json("client", "create", "--merchant", mid)
    assert every["scopes"] == list(ALL_SCOPES) and every["cert_sha256"] is None
    # Without --json: one `key: value` line each, scopes space-separated.
    out = cli("client", "create", "--merchant", mid, "--scopes", "events:read")
    assert out.returncode == 0, out
    shown = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert shown["scopes"] == "events:read" and shown["client_secret"].startswith("cs_")


def test_client_create_refuses_bad_arguments_and_changes_nothing(make_merchant, engine):
    mid = make_merchant()["merchant_id"]
    before = clients_of(engine, mid)
    base = ("client", "create", "--merchant", mid)
    refused(1, "client", "create", "--merchant", "mch_none", says="No such merchant: 'mch_none'")
    refused(
        2, *base, "--scopes", "refunds:read,refunds:delete", says="unknown scope 'refunds:delete'"
    )
    refused(2, *base, "--scopes", ",", says="no scope given")
    refused(2, *base, "--cert-sha256", "abc", says="64 hex digits")
    refused(2, *base, "--cert-sha256", "g" * 64, says="64 hex digits")
    refused(2, "client", "create", says="required: --merchant")
    refused(2, "client", says="required: cmd")
    assert clients_of(engine, mid) == before


def test_client_rotate_secret_keeps_the_old_one_until_the_overlap_ends(api, make_merchant, engine):
    merchant = make_merchant()
    cid, old = merchant["client_id"], merchant["client_secret"]
    rotated = ok_json("client", "rotate-secret", "--client", cid, "--overlap-h", "0.5")
    assert set(rotated) == {"client_id", "client_secret", "previous_secret_expires_at"}
    ends = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert abs(ends - datetime.now(UTC) - timedelta(minutes=30)) < timedelta(minutes=1)
    assert token(api, cid, rotated["client_secret"]).status_code == 200
    assert token(api, cid, old).status_code == 200  # during the overlap

    default = ok_json("client", "rotate-secret", "--client", cid)  # 24 h, as webhook secrets
    ends = datetime.fromisoformat(default["previous_secret_expires_at"])
    assert abs(ends - datetime.now(UTC) - timedelta(hours=24)) < timedelta(minutes=1)
    assert token(api, cid, old).status_code == 401  # one previous secret is kept, not two

    now = ok_json("client", "rotate-secret", "--client", cid, "--overlap-h", "0")
    assert now["previous_secret_expires_at"] is None
    assert token(api, cid, default["client_secret"]).status_code == 401
    assert token(api, cid, now["client_secret"]).status_code == 200

    with engine.connect() as conn:
        before = conn.execute(select(api_clients).where(api_clients.c.client_id == cid)).one()
    refused(1, "client", "rotate-secret", "--client", "ci_none", says="No such client: 'ci_none'")
    refused(2, "client", "rotate-secret", "--client", cid, "--overlap-h", "-1", says="negative")
    refused(2, "client", "rotate-secret", "--client", cid, "--overlap-h", "x", says="not a number")
    with engine.connect() as conn:
        after = conn.execute(select(api_clients).where(api_clients.c.client_id == cid)).one()
    assert after == before


def test_client_revoke_and_list(api, make_merchant, engine):
    merchant = make_merchant()
    mid, cid = merchant["merchant_id"], merchant["client_id"]
    second = ok_json("client", "create", "--merchant", mid, "--scopes", "balance:read")
    assert token(api, cid, merchant["client_secret"]).status_code == 200

    out = cli("client", "revoke", "--client", cid)
    assert out.returncode == 0 and out.stderr == "", out
    shown = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert shown["client_id"] == cid and shown["refresh_tokens_revoked"] == "1"
    assert token(api, cid, merchant["client_secret"]).status_code == 401
    assert token(api, second["client_id"], second["client_secret"]).status_code == 200
    again = ok_json("client", "revoke", "--client", cid)  # a second revoke changes nothing
    assert again["revoked_at"] == shown["revoked_at"]
    assert again["refresh_tokens_revoked"] == 0
    refused(1, "client", "rotate-secret", "--client", cid, says=f"client {cid} is revoked")
    refused(1, "client", "revoke", "--client", "ci_none", says="No such client: 'ci_none'")

    listed = ok_json("client", "list", "--merchant", mid)
    assert listed["merchant_id"] == mid
    assert [c["client_id"] for c in listed["clients"]] == [cid, second["client_id"]]
    first, other = listed["clients"]
    assert set(first) == {
        "client_id", "scopes", "cert_sha256", "created_at", "revoked_at",
        "previous_secret_expires_at",
    }  # fmt: skip
    assert first["revoked_at"] == again["revoked_at"] and other["revoked_at"] is None
    assert other["scopes"] == ["balance:read"] and first["scopes"] == list(ALL_SCOPES)
    text = json.dumps(listed)
    assert "client_secret" not in text and merchant["client_secret"] not in text
    assert second["client_secret"] not in text
    plain = cli("client", "list", "--merchant", mid)
    assert plain.returncode == 0 and len(plain.stdout.splitlines()) == 2, plain
    assert "revoked_at: " in plain.stdout.splitlines()[0]
    refused(1, "client", "list", "--merchant", "mch_none", says="No such merchant: 'mch_none'")

    with engine.connect() as conn:
        revoked = conn.execute(
            select(func.count()).where(
                api_clients.c.merchant_id == mid, api_clients.c.revoked_at.is_not(None)
            )
        ).scalar_one()
    assert revoked == 1
