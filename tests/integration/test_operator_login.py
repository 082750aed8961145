"""Operator login, password change, lockout and refresh, against the real app and database.

Each test makes its own operator (and so its own audit rows, found by its
email) and sends from its own source IP. TOTP codes are pyotp's, for real
time steps: a test needing several fresh codes takes them in rising steps
(-1, 0, +1), and waits first until the current step is not about to end.
"""

from __future__ import annotations

import threading
import time

import jwt
import pytest
from sqlalchemy import select, update

from intake.app import create_app
from shared.db.tables import audit_log, operators
from tests.support.apiclient import OwnAddressClient
from tests.support.operators import (
    bearer,
    early_in_a_step,
    make_operator,
    operator_token,
    totp_code,
)
from tests.support.waiting import until

pytestmark = pytest.mark.integration

LOGIN = "/v1/operator/login"
PASSWORD = "/v1/operator/password"
REFRESH = "/v1/operator/refresh"


def _client(settings, engine, vault) -> OwnAddressClient:
    return OwnAddressClient(
        create_app(settings, engine=engine, dispatch=lambda *a, **k: None, vault=vault)
    )


@pytest.fixture
def api(settings, engine, vault):
    return _client(settings, engine, vault)


def login(api, op, code=None, *, password=None, request_id=None):
    body = {
        "email": op.email,
        "password": op.password if password is None else password,
        "totp": totp_code(op) if code is None else code,
    }
    headers = {"X-Request-Id": request_id} if request_id else None
    return api.simulate_post(LOGIN, json=body, headers=headers)


def change(api, op, new_password, code, *, current=None):
    return api.simulate_post(
        PASSWORD,
        json={
            "email": op.email,
            "current_password": op.password if current is None else current,
            "new_password": new_password,
            "totp": code,
        },
    )


def wrong_code(op) -> str:
    window = {totp_code(op, steps) for steps in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in window)


def audit_rows(engine, op_or_email) -> list:
    email = getattr(op_or_email, "email", op_or_email)
    with engine.connect() as conn:
        return conn.execute(
            select(audit_log).where(audit_log.c.target == email).order_by(audit_log.c.id)
        ).all()


def account(engine, op):
    with engine.connect() as conn:
        return conn.execute(select(operators).where(operators.c.id == op.id)).one()


def test_a_login_gives_a_token_for_the_operator_routes(api, engine, vault):
    op = make_operator(engine, vault, "support")
    got = login(api, op, request_id="req-login-ok")
    assert got.status_code == 200, got.text
    assert set(got.json) == {"access_token", "expires_in", "role"}
    assert got.json["role"] == "support" and got.json["expires_in"] == 900
    assert got.headers["Cache-Control"] == "no-store"
    me = api.simulate_get("/v1/operator/me", headers=bearer(got.json["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json["email"] == op.email and me.json["role"] == "support"
    (row,) = audit_rows(engine, op)[-1:]
    assert (row.action, row.actor, row.request_id) == (
        "operator.login",
        f"operator:{op.email}",
        "req-login-ok",
    )
    assert row.source_ip == api.remote_addr and row.after == {"role": "support"}


def test_every_wrong_credential_gets_the_same_answer(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    disabled = make_operator(engine, vault, "viewer")
    with engine.begin() as conn:
        conn.execute(
            update(operators).where(operators.c.id == disabled.id).values(disabled_at="now()")
        )
    answers = [
        login(api, op, password=op.password + "x"),
        login(api, op, wrong_code(op)),
        api.simulate_post(
            LOGIN,
            json={"email": "nobody-" + op.email, "password": op.password, "totp": "123456"},
        ),
        login(api, disabled),
    ]
    assert {(a.status_code, a.json["code"], a.json["detail"]) for a in answers} == {
        (401, "invalid_credentials", "The email, password or TOTP code is not right.")
    }
    reasons = [r.after["reason"] for r in audit_rows(engine, op) if r.action != "operator.create"]
    assert reasons == ["password", "totp_invalid"]
    assert audit_rows(engine, disabled)[-1].after == {"reason": "disabled"}
    unknown = audit_rows(engine, "nobody-" + op.email)
    assert [(r.action, r.after) for r in unknown] == [
        ("operator.login_failed", {"reason": "unknown_email"})
    ]


def test_a_code_is_accepted_once_and_never_an_older_one(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    early_in_a_step()
    assert login(api, op, totp_code(op, 0)).status_code == 200
    again = login(api, op, totp_code(op, 0))
    older = login(api, op, totp_code(op, -1))
    assert (again.status_code, again.json["code"]) == (401, "invalid_credentials")
    assert (older.status_code, older.json["code"]) == (401, "invalid_credentials")
    failed = [r.after["reason"] for r in audit_rows(engine, op) if r.action.endswith("_failed")]
    assert failed == ["totp_replayed", "totp_replayed"]
    assert login(api, op, totp_code(op, 1)).status_code == 200


def test_a_temporary_password_must_be_changed_before_a_login(api, engine, vault):
    op = make_operator(engine, vault, "admin", permanent=False)
    new_password = "a brand new passphrase " + op.id[-6:]
    early_in_a_step()
    first = login(api, op, totp_code(op, 0))
    assert (first.status_code, first.json["code"]) == (403, "password_change_required")
    # The refused login gave no token, so its code still changes the password.
    changed = change(api, op, new_password, totp_code(op, 0))
    assert changed.status_code == 200, changed.text
    assert changed.json == {"object": "operator_password", "changed": True}
    assert account(engine, op).password_temporary is False
    assert login(api, op, totp_code(op, 1)).status_code == 401  # the old password
    now = login(api, op, totp_code(op, 1), password=new_password)
    assert now.status_code == 200, now.text
    rows = [(r.action, r.before, r.after) for r in audit_rows(engine, op)]
    assert ("operator.login_failed", None, {"reason": "password_change_required"}) in rows
    assert (
        "operator.password_change",
        {"password_temporary": True},
        {"password_temporary": False},
    ) in rows
    assert not any(op.password in str(r) or new_password in str(r) for r in rows)


@pytest.mark.parametrize(
    ("new_password", "reason"),
    [
        ("short pass", "at least 12 characters"),
        ("PASSWORD1234", "too common"),
        (None, "must not be the email"),
        ("same", "differ from the current password"),
    ],
)
def test_a_refused_new_password_changes_nothing(api, engine, vault, new_password, reason):
    op = make_operator(engine, vault, "viewer")
    new_password = {None: op.email, "same": op.password}.get(new_password, new_password)
    before = account(engine, op)
    got = change(api, op, new_password, totp_code(op))
    assert got.status_code == 400, got.text
    assert (got.json["code"], got.json["param"]) == ("password_too_weak", "new_password")
    assert reason in got.json["detail"]
    assert account(engine, op) == before  # hash, flags and TOTP step alike
    assert login(api, op).status_code == 200  # the same code still good: it was not used


def test_a_wrong_current_password_or_code_refuses_the_change(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    before = account(engine, op).password_hash
    wrong = change(api, op, "another long passphrase", totp_code(op), current="not it at all")
    bad_code = change(api, op, "another long passphrase", wrong_code(op))
    for got in (wrong, bad_code):
        assert (got.status_code, got.json["code"]) == (401, "invalid_credentials")
    assert account(engine, op).password_hash == before
    assert account(engine, op).failed_logins == 2  # they count towards the lockout
    failed = [r.after for r in audit_rows(engine, op) if r.action.endswith("_failed")]
    assert failed == [{"reason": "password"}, {"reason": "totp_invalid"}]


def test_five_failures_lock_the_account_even_against_the_right_credentials(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    answers = [login(api, op, password="wrong password " + str(i)) for i in range(5)]
    assert [a.status_code for a in answers] == [401, 401, 401, 401, 423]
    locked = answers[-1]
    assert locked.json["code"] == "operator_locked"
    assert 895 <= int(locked.headers["Retry-After"]) <= 900
    assert locked.json["retry_after_s"] == int(locked.headers["Retry-After"])
    right = login(api, op)
    assert (right.status_code, right.json["code"]) == (423, "operator_locked")
    assert int(right.headers["Retry-After"]) <= 900
    assert login(api, op).status_code == 423  # the code was not used up either
    rows = audit_rows(engine, op)
    assert [r.action for r in rows].count("operator.locked") == 1
    assert [r.after["reason"] for r in rows if r.action == "operator.login_failed"] == [
        "password"
    ] * 5 + ["locked"] * 2


def test_a_success_resets_the_failure_count(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    for _ in range(4):
        assert login(api, op, wrong_code(op)).status_code == 401
    assert account(engine, op).failed_logins == 4
    assert login(api, op).status_code == 200
    assert account(engine, op).failed_logins == 0
    for i in range(4):
        assert login(api, op, password=f"wrong password {i}").status_code == 401
    assert account(engine, op).locked_until is None


def test_a_login_works_again_once_the_lock_expires(settings, engine, vault):
    api = _client(settings.replace(operator_lockout_s=2), engine, vault)
    op = make_operator(engine, vault, "viewer")
    answers = [login(api, op, wrong_code(op)).status_code for _ in range(5)]
    assert answers == [401] * 4 + [423]
    assert login(api, op).status_code == 423
    until(lambda: login(api, op).status_code == 200, timeout=10, what="the lock to expire")


def test_two_concurrent_logins_with_one_code_give_exactly_one_token(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    early_in_a_step()
    code, racers = totp_code(op), 4
    start = threading.Barrier(racers)
    answers: list = []

    def race():
        start.wait()
        answers.append(login(api, op, code))

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(a.status_code for a in answers) == [200] + [401] * (racers - 1)
    failed = [r.after["reason"] for r in audit_rows(engine, op) if r.action.endswith("_failed")]
    assert failed == ["totp_replayed"] * (racers - 1)


def test_refresh_copies_auth_time_and_stops_at_the_session_limit(api, settings, engine, vault):
    op = make_operator(engine, vault, "viewer")
    token = login(api, op).json["access_token"]
    got = api.simulate_post(REFRESH, headers=bearer(token))
    assert got.status_code == 200, got.text
    fresh = got.json["access_token"]
    assert fresh != token and got.json["role"] == "viewer"
    claims = [jwt.decode(t, options={"verify_signature": False}) for t in (token, fresh)]
    assert claims[1]["auth_time"] == claims[0]["auth_time"]
    assert api.simulate_get("/v1/operator/me", headers=bearer(fresh)).status_code == 200

    limit = settings.operator_session_max_s
    near = operator_token(settings, op, auth_time=time.time() - limit + 60)
    late = api.simulate_post(REFRESH, headers=bearer(near))
    assert late.status_code == 200 and late.json["expires_in"] <= 60  # never past the limit
    old = operator_token(settings, op, auth_time=time.time() - limit)
    refused = api.simulate_post(REFRESH, headers=bearer(old))
    assert (refused.status_code, refused.json["code"]) == (401, "reauthentication_required")


def test_refresh_needs_an_operator_token(api, engine, vault):
    assert api.simulate_post(REFRESH).status_code == 401


@pytest.mark.parametrize(
    "body",
    [{}, {"email": "a@b.co", "password": "x"}, {"email": "a@b.co", "password": "x", "totp": 1}],
)
def test_a_malformed_login_is_refused_before_any_account_is_read(api, body):
    got = api.simulate_post(LOGIN, json=body)
    assert (got.status_code, got.json["code"]) == (400, "parameter_invalid")


def test_unknown_fields_are_refused(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    body = {"email": op.email, "password": op.password, "totp": totp_code(op), "role": "admin"}
    got = api.simulate_post(LOGIN, json=body)
    assert got.status_code == 400 and got.json["param"] == "role"
    assert account(engine, op).totp_last_step is None


def test_logins_are_rate_limited_per_source_ip(settings, engine, vault):
    api = _client(settings.replace(rate_limit_token_per_ip=1.0), engine, vault)
    # Malformed bodies: the limit counts them too, and they touch no account.
    statuses = [api.simulate_post(LOGIN, json={}) for _ in range(4)]
    assert 429 in [s.status_code for s in statuses]
    refused = next(s for s in statuses if s.status_code == 429)
    assert refused.json["code"] == "rate_limited" and "Retry-After" in refused.headers
