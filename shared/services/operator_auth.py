"""Operators log in (password and TOTP), change their password, refresh their token.

Each function runs its own transactions: a refused attempt's failure count and
audit row commit although the attempt is refused. Every refusal of bad
credentials reads alike (``InvalidCredentials``: unknown email, wrong password,
disabled account, wrong or replayed code), and an unknown email still costs an
argon2 verification, so neither the answer nor its timing says which emails
exist. The accepted TOTP step is claimed with a conditional UPDATE, so of two
concurrent logins with one code exactly one succeeds.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import NoReturn, Protocol

import pyotp
from sqlalchemy import func, or_, select, update

from shared.config import Settings
from shared.db.tables import operators
from shared.db.uow import UnitOfWork, transact
from shared.domain import operator_lockout as lockout
from shared.domain import passwords
from shared.domain import totp as totp_rules
from shared.security.passwords import hash_password, verify_password
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_operator_token
from shared.services import audit
from shared.services.audit import Actor
from shared.services.errors import ServiceError


class InvalidCredentials(ServiceError):
    code = "invalid_credentials"

    def __init__(self):
        super().__init__("The email, password or TOTP code is not right.")


class PasswordChangeRequired(ServiceError):
    code = "password_change_required"

    def __init__(self):
        super().__init__(
            "The password is temporary: change it (POST /v1/operator/password), then log in."
        )


class OperatorLocked(ServiceError):
    """Too many failed logins; ``retry_after_s``: seconds until the lock ends."""

    code = "operator_locked"

    def __init__(self, retry_after_s: int):
        super().__init__(
            f"Too many failed logins: the account is locked; retry after {retry_after_s} s."
        )
        self.retry_after_s = retry_after_s


class PasswordTooWeak(ServiceError):
    code = "password_too_weak"

    def __init__(self, reason: str):
        super().__init__(f"The new password is refused: {reason}.", "new_password")


class ReauthenticationRequired(ServiceError):
    code = "reauthentication_required"

    def __init__(self, max_s: int):
        super().__init__(
            f"The session is older than {max_s} s: log in again with a TOTP code"
            " (POST /v1/operator/login)."
        )


class Principal(Protocol):
    """The operator a token is for (intake's OperatorPrincipal)."""

    id: str
    email: str
    role: str
    auth_time: int


@dataclass(frozen=True)
class _Attempt:
    address: str
    actor: Actor
    failed_action: str
    now: float

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class _ClaimLost(Exception):
    """Another request claimed this TOTP step (or locked the account) first."""


def login(
    engine,
    keys: SigningKeys,
    vault,
    settings: Settings,
    *,
    email: str,
    password: str,
    totp: str,
    source_ip: str | None = None,
    request_id: str | None = None,
) -> dict:
    """A new operator token for the right email, password and TOTP code (``auth_time``: now)."""
    attempt = _attempt(email, "operator.login_failed", source_ip, request_id)
    row, step = _verified(engine, vault, settings, attempt, password, totp)

    def finish(uow: UnitOfWork) -> dict:
        if row.password_temporary:
            # No token is given, so the code is not used up: the operator's next
            # call, the password change, may send the same code (as a first login does).
            _record(uow, attempt, attempt.failed_action, {"reason": "password_change_required"})
            raise PasswordChangeRequired()
        _claim(uow, row.id, step, attempt.at)
        _record(uow, attempt, "operator.login", {"role": row.role})
        token, expires_in = issue_operator_token(
            keys, settings, row.id, row.email, row.role, auth_time=int(attempt.now)
        )
        return {"access_token": token, "expires_in": expires_in, "role": row.role}

    return _finish(engine, settings, attempt, row, finish, keep_on=(PasswordChangeRequired,))


def change_password(
    engine,
    vault,
    settings: Settings,
    *,
    email: str,
    current_password: str,
    new_password: str,
    totp: str,
    source_ip: str | None = None,
    request_id: str | None = None,
) -> None:
    """Replace the operator's password (and end a temporary one); needs a fresh TOTP code."""
    attempt = _attempt(email, "operator.password_change_failed", source_ip, request_id)
    # The policy first: a refused new password changes nothing, not even the code's step.
    try:
        passwords.check(new_password, attempt.address)
    except passwords.WeakPassword as exc:
        raise PasswordTooWeak(str(exc)) from None
    if new_password == current_password:
        raise PasswordTooWeak("it must differ from the current password")
    row, step = _verified(engine, vault, settings, attempt, current_password, totp)
    new_hash = hash_password(new_password)

    def finish(uow: UnitOfWork) -> None:
        _claim(uow, row.id, step, attempt.at)
        uow.conn.execute(
            update(operators)
            .where(operators.c.id == row.id)
            .values(password_hash=new_hash, password_temporary=False)
        )
        audit.record_as(
            uow,
            attempt.actor,
            "operator.password_change",
            attempt.address,
            before={"password_temporary": row.password_temporary},
            after={"password_temporary": False},
        )

    _finish(engine, settings, attempt, row, finish)


def refresh(engine, keys: SigningKeys, settings: Settings, principal: Principal) -> dict:
    """A new token for a still-valid one, ``auth_time`` copied; refused past the session limit."""
    now = time.time()
    left = principal.auth_time + settings.operator_session_max_s - now
    if left <= 0:
        raise ReauthenticationRequired(settings.operator_session_max_s)
    with UnitOfWork(engine) as uow:
        row = uow.conn.execute(
            select(operators.c.role, operators.c.disabled_at).where(operators.c.id == principal.id)
        ).first()
    if row is None or row.disabled_at is not None:
        raise InvalidCredentials()
    # The role as it is now, not as the old token says; no token outlives the session.
    ttl = min(settings.operator_token_ttl_s, int(left))
    token, expires_in = issue_operator_token(
        keys,
        settings.replace(operator_token_ttl_s=max(1, ttl)),
        principal.id,
        principal.email,
        row.role,
        auth_time=principal.auth_time,
        now=now,
    )
    return {"access_token": token, "expires_in": expires_in, "role": row.role}


def _attempt(email: str, failed_action: str, source_ip, request_id) -> _Attempt:
    # Not normalize_email: a malformed address is refused as an unknown one is.
    address = email.strip().lower()[:254]
    actor = Actor(f"operator:{address}", request_id, source_ip)
    return _Attempt(address, actor, failed_action, time.time())


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(18))


def _verified(engine, vault, settings, attempt: _Attempt, password: str, code: str):
    """(row, TOTP step to claim) if the credentials are right and the account open; else raise."""
    with UnitOfWork(engine) as uow:
        row = uow.conn.execute(
            select(operators).where(func.lower(operators.c.email) == attempt.address)
        ).first()
    if row is None:
        verify_password(_dummy_hash(), password)  # as long as a real check takes
        _fail(engine, settings, attempt, None, "unknown_email")
    left = lockout.locked_for_s(_state(row), attempt.at)
    if left:
        _refuse_locked(engine, attempt, left)
    if not verify_password(row.password_hash, password):
        _fail(engine, settings, attempt, row, "password")
    if row.disabled_at is not None:
        _fail(engine, settings, attempt, row, "disabled")
    secret = vault.decrypt(row.totp_secret_enc, aad=row.id)
    verdict = totp_rules.decide(
        code, pyotp.TOTP(secret).generate_otp, attempt.now, row.totp_last_step
    )
    if not verdict.accepted:
        _fail(engine, settings, attempt, row, verdict.reason)
    return row, verdict.step


def _finish(engine, settings, attempt: _Attempt, row, fn, keep_on=()):
    """Run ``fn`` (which claims the step) in one transaction; a lost claim is a failure."""
    try:
        return transact(lambda: UnitOfWork(engine), fn, keep_on=keep_on)
    except _ClaimLost:
        pass
    with UnitOfWork(engine) as uow:
        now_row = uow.conn.execute(select(operators).where(operators.c.id == row.id)).one()
    left = lockout.locked_for_s(_state(now_row), attempt.at)
    if left:
        _refuse_locked(engine, attempt, left)
    _fail(engine, settings, attempt, row, "totp_replayed")


def _claim(uow: UnitOfWork, operator_id: str, step: int, at: datetime) -> None:
    """Take TOTP ``step`` for good and clear the failures, unless another request was first."""
    claimed = uow.conn.execute(
        update(operators)
        .where(
            operators.c.id == operator_id,
            or_(operators.c.totp_last_step.is_(None), operators.c.totp_last_step < step),
            or_(operators.c.locked_until.is_(None), operators.c.locked_until <= at),
        )
        .values(totp_last_step=step, **lockout.CLEAR.as_columns)
    )
    if claimed.rowcount != 1:
        raise _ClaimLost()


def _state(row) -> lockout.FailureState:
    return lockout.FailureState(row.failed_logins, row.first_failure_at, row.locked_until)


def _policy(settings: Settings) -> lockout.Policy:
    return lockout.Policy(
        settings.operator_lockout_failures,
        settings.operator_lockout_window_s,
        settings.operator_lockout_s,
    )


def _record(uow: UnitOfWork, attempt: _Attempt, action: str, after: dict) -> None:
    audit.record_as(uow, attempt.actor, action, attempt.address, after=after)


def _fail(engine, settings, attempt: _Attempt, row, reason: str) -> NoReturn:
    """Count the failure (an existing account), audit it and any lock it causes; raise."""

    def count(uow: UnitOfWork) -> int:
        _record(uow, attempt, attempt.failed_action, {"reason": reason})
        if row is None:
            return 0
        current = uow.conn.execute(
            select(operators).where(operators.c.id == row.id).with_for_update()
        ).one()
        before = _state(current)
        after = lockout.after_failure(before, attempt.at, _policy(settings))
        uow.conn.execute(
            update(operators).where(operators.c.id == row.id).values(**after.as_columns)
        )
        if lockout.locked_for_s(before, attempt.at) or not after.locked_until:
            return 0
        _record(
            uow,
            attempt,
            "operator.locked",
            {"locked_until": after.locked_until.isoformat(), "reason": reason},
        )
        return lockout.locked_for_s(after, attempt.at)

    locked_s = transact(lambda: UnitOfWork(engine), count)
    if locked_s:
        raise OperatorLocked(locked_s)
    raise InvalidCredentials()


def _refuse_locked(engine, attempt: _Attempt, left: int) -> NoReturn:
    transact(
        lambda: UnitOfWork(engine), _record, attempt, attempt.failed_action, {"reason": "locked"}
    )
    raise OperatorLocked(left)
