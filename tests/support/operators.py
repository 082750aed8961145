"""Operators for tests: a real account (through the service) and a token for it.

``make_operator`` creates the account as ``clearhouse operator create`` does,
then sets a known, permanent password (as a first login's password change
would), so a test can log in or simply mint a token with ``operator_token``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import pyotp
from sqlalchemy import update

from shared.db.tables import operators
from shared.db.uow import UnitOfWork
from shared.security.passwords import hash_password
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_operator_token
from shared.services import operators as operator_service
from tests.support.waiting import until


@dataclass(frozen=True)
class TestOperator:
    id: str
    email: str
    role: str
    password: str
    totp_secret: str
    temporary_password: str


def make_operator(engine, vault, role: str, *, permanent: bool = True) -> TestOperator:
    """A new operator of ``role`` with a random email; ``permanent``: password already changed."""
    email = f"op-{secrets.token_hex(6)}@example.com"
    with UnitOfWork(engine) as uow:
        out = operator_service.create_operator(uow, vault, email, role, "test:fixture")
        uow.commit()
    secret = parse_qs(urlparse(out["otpauth_uri"]).query)["secret"][0]
    password = out["temporary_password"]
    if permanent:
        password = "correct horse battery " + secrets.token_hex(4)
        with engine.begin() as conn:
            conn.execute(
                update(operators)
                .where(operators.c.email == email)
                .values(password_hash=hash_password(password), password_temporary=False)
            )
    with engine.connect() as conn:
        operator_id = conn.execute(operators.select().where(operators.c.email == email)).first().id
    return TestOperator(operator_id, email, role, password, secret, out["temporary_password"])


def operator_token(settings, operator: TestOperator, *, auth_time: float | None = None) -> str:
    """A signed operator token for ``operator`` (as a login with its TOTP would give)."""
    keys = SigningKeys.for_operators(settings)
    now = time.time()
    token, _ = issue_operator_token(
        keys,
        settings,
        operator.id,
        operator.email,
        operator.role,
        auth_time=int(now if auth_time is None else auth_time),
    )
    return token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def totp_code(operator: TestOperator, steps: int = 0) -> str:
    """The operator's TOTP code ``steps`` time steps (30 s) from now (±1 is accepted)."""
    return pyotp.TOTP(operator.totp_secret).at(time.time() + 30 * steps)


def early_in_a_step(margin_s: float = 5.0) -> None:
    """Return once the current TOTP step has at least ``margin_s`` left.

    For tests that log in with the previous step's code (steps=-1): it stays
    good only until the step ends, so the first request must not meet a boundary.
    """
    until(
        lambda: 30 - time.time() % 30 >= margin_s,
        timeout=margin_s + 1,
        interval=0.05,
        what="the next TOTP step",
    )
