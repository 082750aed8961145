"""Operator accounts: create one (a one-time enrolment), disable one; each audited.

An account starts with a random temporary password (to be changed at first
login) and a TOTP secret, shown once as an ``otpauth://`` URI; the secret is
stored encrypted with the card keys, bound by AAD to the operator's id.
"""

from __future__ import annotations

import secrets

import pyotp
from sqlalchemy import func, insert, select

from shared.db.tables import operators
from shared.db.uow import UnitOfWork
from shared.domain import passwords
from shared.domain.operators import ROLES, normalize_email
from shared.security.passwords import hash_password
from shared.services import audit
from shared.services.errors import NotFound, ServiceError
from shared.services.ids import new_id

ISSUER = "clearhouse"


def _email(email: str) -> str:
    address = normalize_email(email)
    if address is None:
        raise ServiceError(f"not an email address: {email!r}", "email")
    return address


def _find(uow: UnitOfWork, address: str, *, lock: bool = False):
    query = select(operators).where(func.lower(operators.c.email) == address)
    return uow.conn.execute(query.with_for_update() if lock else query).first()


def _temporary_password(address: str) -> str:
    # 24 URL-safe characters (144 bits); drawn again in the unlikely case the
    # policy refuses one, so a temporary password is never weaker than a chosen one.
    while True:
        candidate = secrets.token_urlsafe(18)
        try:
            passwords.check(candidate, address)
            return candidate
        except passwords.WeakPassword:
            continue


def create_operator(
    uow: UnitOfWork, vault, email: str, role: str, actor: audit.Actor | str
) -> dict:
    """A new operator; its temporary password and TOTP enrolment URI are returned only here."""
    address = _email(email)
    if role not in ROLES:
        raise ServiceError(f"role must be one of {', '.join(ROLES)}, got {role!r}", "role")
    if _find(uow, address) is not None:
        # The unique index on lower(email) still guards a concurrent create.
        raise ServiceError(f"an operator with email {address} exists", "email")
    operator_id = new_id("op")
    password = _temporary_password(address)
    totp_secret = pyotp.random_base32()
    uow.conn.execute(
        insert(operators).values(
            id=operator_id,
            email=address,
            role=role,
            password_hash=hash_password(password),
            password_temporary=True,
            totp_secret_enc=vault.encrypt(totp_secret, aad=operator_id),
        )
    )
    audit.record_as(
        uow,
        audit.as_actor(actor),
        "operator.create",
        address,
        after={"id": operator_id, "email": address, "role": role, "password_temporary": True},
    )
    uri = pyotp.TOTP(totp_secret).provisioning_uri(name=address, issuer_name=ISSUER)
    return {"email": address, "role": role, "otpauth_uri": uri, "temporary_password": password}


def disable_operator(uow: UnitOfWork, email: str, actor: audit.Actor | str) -> dict:
    """Refuse the operator from now on (the row stays: the audit trail names it)."""
    address = _email(email)
    row = _find(uow, address, lock=True)
    if row is None:
        raise NotFound("operator", address, "email")
    if row.disabled_at is not None:
        raise ServiceError(f"operator {address} is already disabled", "email")
    disabled_at = uow.conn.execute(
        operators.update()
        .where(operators.c.id == row.id)
        .values(disabled_at=func.now())
        .returning(operators.c.disabled_at)
    ).scalar_one()
    audit.record_as(
        uow,
        audit.as_actor(actor),
        "operator.disable",
        address,
        before={"disabled_at": None},
        after={"disabled_at": disabled_at.isoformat()},
    )
    return {"email": address, "disabled_at": disabled_at.isoformat()}


def is_active(uow: UnitOfWork, operator_id: str) -> bool:
    """True if the operator exists and is not disabled (checked on every operator request)."""
    row = uow.conn.execute(
        select(operators.c.disabled_at).where(operators.c.id == operator_id)
    ).first()
    return row is not None and row.disabled_at is None
