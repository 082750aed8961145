"""``clearhouse operator create|disable`` through the real CLI process, on the layer's database.

Each test makes operators of its own (a random email). What the command wrote is
read back from the tables: the argon2id hash, the encrypted TOTP secret, the
audit row naming ``cli:<os user>``. The audit trail's immutability is checked
as ``clearhouse_app``, the role the services log in as.
"""

from __future__ import annotations

import getpass
import io
import os
import secrets
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pyotp
import pytest
import qrcode
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from shared.config import with_user
from shared.db import roles
from shared.db.tables import audit_log, operators
from shared.security.passwords import verify_password
from shared.security.vault import Vault, load_keys
from shared.services import card_data
from tests.integration.test_client_cli import cli, ok_json, refused

pytestmark = pytest.mark.integration

ACTOR = f"cli:{getpass.getuser()}"
INSUFFICIENT_PRIVILEGE = "42501"
INTEGRITY_CONSTRAINT_VIOLATION = "23000"


def new_email() -> str:
    return f"op-{secrets.token_hex(5)}@example.com"


def operator_row(engine, email: str):
    with engine.connect() as conn:
        return conn.execute(
            select(operators).where(func.lower(operators.c.email) == email.lower())
        ).first()


def audit_rows(engine, email: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(audit_log).where(audit_log.c.target == email).order_by(audit_log.c.id)
        ).all()


def test_create_prints_a_one_time_enrolment_and_stores_only_hashes(engine, vault):
    email = new_email()
    out = ok_json("operator", "create", "--email", email, "--role", "support")
    assert set(out) == {"email", "role", "otpauth_uri", "temporary_password"}
    assert (out["email"], out["role"]) == (email, "support")

    totp = pyotp.parse_uri(out["otpauth_uri"])
    assert totp.issuer == "clearhouse" and totp.name == email
    row = operator_row(engine, email)
    # The stored secret is the URI's, encrypted and bound to the operator's id.
    assert row.totp_secret_enc != totp.secret
    assert pyotp.TOTP(vault.decrypt(row.totp_secret_enc, aad=row.id)).verify(totp.now())
    assert row.password_hash.startswith("$argon2id$")
    assert verify_password(row.password_hash, out["temporary_password"])
    assert row.password_temporary is True and row.disabled_at is None
    assert row.role == "support"

    (audit,) = audit_rows(engine, email)
    assert (audit.actor, audit.action) == (ACTOR, "operator.create")
    assert audit.before is None and audit.after["role"] == "support"
    written = repr(tuple(audit))
    assert out["temporary_password"] not in written and totp.secret not in written
    assert datetime.now(UTC) - audit.at < timedelta(minutes=5)


def test_create_without_json_prints_key_value_lines():
    email = new_email()
    out = cli("operator", "create", "--email", email, "--role", "viewer")
    # The layer's first CLI run may generate its dev keys (one WARNING line each).
    noise = [line for line in out.stderr.splitlines() if not line.startswith("keys: generated")]
    assert out.returncode == 0 and noise == [], out
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines()[:4])
    assert set(lines) == {"email", "role", "otpauth_uri", "temporary_password"}
    assert lines["email"] == email and lines["otpauth_uri"].startswith("otpauth://totp/")
    # Then the QR code of exactly that URI, for an authenticator app to scan.
    code = qrcode.QRCode(border=1)
    code.add_data(lines["otpauth_uri"])
    drawn = io.StringIO()
    code.print_ascii(out=drawn, invert=True)
    assert drawn.getvalue().strip() and drawn.getvalue() in out.stdout


def test_a_second_operator_with_the_same_email_in_any_case_is_refused(engine):
    email = new_email()
    ok_json("operator", "create", "--email", email, "--role", "admin")
    refused(1, "operator", "create", "--email", email.upper(), "--role", "viewer", says="exists")
    row = operator_row(engine, email)
    assert row.role == "admin"
    assert [r.action for r in audit_rows(engine, email)] == ["operator.create"]


@pytest.mark.parametrize(
    "status, args, says",
    [
        (1, ("--email", "not-an-email", "--role", "admin"), "not an email address"),
        (2, ("--email", "x@example.com", "--role", "root"), "invalid choice"),
        (2, ("--role", "admin"), "--email"),
    ],
    ids=["bad email", "bad role", "no email"],
)
def test_create_refuses_bad_arguments_and_writes_nothing(engine, status, args, says):
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(audit_log)).scalar()
    refused(status, "operator", "create", *args, says=says)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar() == before
        assert (
            conn.execute(
                select(func.count())
                .select_from(operators)
                .where(operators.c.email == "not-an-email")
            ).scalar()
            == 0
        )


def test_disable_sets_disabled_at_and_is_audited(engine):
    email = new_email()
    ok_json("operator", "create", "--email", email, "--role", "viewer")
    out = ok_json("operator", "disable", "--email", email)
    row = operator_row(engine, email)
    assert row.disabled_at is not None and out["email"] == email
    create, disable = audit_rows(engine, email)
    assert (disable.actor, disable.action) == (ACTOR, "operator.disable")
    assert disable.before == {"disabled_at": None} and disable.after["disabled_at"]
    # Twice is refused, and an unknown email is: one line, nothing written.
    refused(1, "operator", "disable", "--email", email, says="already disabled")
    refused(1, "operator", "disable", "--email", new_email(), says="No such operator")
    assert len(audit_rows(engine, email)) == 2


@pytest.fixture
def audit_row_as_app(database):
    """A connection as clearhouse_app, in a transaction holding one audit row it appended."""
    engine = create_engine(with_user(database, roles.APP), poolclass=NullPool)
    with engine.connect() as conn, conn.begin():
        row_id = conn.execute(
            text(
                "INSERT INTO audit_log (actor, action, target) VALUES ('test', 'test.row', :t)"
                " RETURNING id"
            ),
            {"t": new_email()},
        ).scalar()
        yield conn, row_id
    engine.dispose()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET actor = 'someone else' WHERE id = :id",
        "DELETE FROM audit_log WHERE id = :id",
        "TRUNCATE audit_log",
    ],
    ids=["update", "delete", "truncate"],
)
def test_the_app_role_may_not_rewrite_the_audit_trail(audit_row_as_app, sql):
    conn, row_id = audit_row_as_app
    with pytest.raises(DBAPIError) as refusal, conn.begin_nested():
        conn.execute(text(sql), {"id": row_id})
    assert refusal.value.orig.pgcode == INSUFFICIENT_PRIVILEGE, refusal.value
    assert (
        conn.execute(text("SELECT actor FROM audit_log WHERE id = :id"), {"id": row_id}).scalar()
        == "test"
    )


@pytest.mark.parametrize(
    "sql",
    ["UPDATE audit_log SET actor = 'x' WHERE id = :id", "DELETE FROM audit_log WHERE id = :id"],
    ids=["update", "delete"],
)
def test_the_trigger_refuses_even_the_owner(admin_engine, sql):
    """The grants are one guard; the trigger is the other, for a role the grants allow."""
    with admin_engine.connect() as conn, conn.begin():
        row_id = conn.execute(
            text("INSERT INTO audit_log (actor, action) VALUES ('test', 'test.row') RETURNING id")
        ).scalar()
        with pytest.raises(DBAPIError) as refusal, conn.begin_nested():
            conn.execute(text(sql), {"id": row_id})
        assert refusal.value.orig.pgcode == INTEGRITY_CONSTRAINT_VIOLATION, refusal.value
        assert "immutable" in str(refusal.value)
        conn.rollback()


def test_card_key_rotation_reencrypts_the_totp_secret(engine, settings, vault):
    """``keys reencrypt`` walks operators too: the secret moves to the new key, still bound."""
    email = new_email()
    out = ok_json("operator", "create", "--email", email, "--role", "viewer")
    secret = pyotp.parse_uri(out["otpauth_uri"]).secret
    current = load_keys(settings.key_dir, production=False)
    rotated = Vault({**current.keys, "vtest": os.urandom(32)}, current.fingerprint_key)
    with engine.connect() as conn, conn.begin() as tx:
        uow = SimpleNamespace(conn=conn)
        after = None
        while True:  # every batch, as a pass does
            batch = card_data.reencrypt_batch(uow, rotated, operators, after, 500)
            if batch.next_after is None:
                break
            after = batch.next_after
        row = conn.execute(select(operators).where(operators.c.email == email)).one()
        assert row.totp_secret_enc.startswith("vtest:")
        assert rotated.decrypt(row.totp_secret_enc, aad=row.id) == secret
        # Never committed: the layer's other tests keep the layer's keys.
        tx.rollback()
