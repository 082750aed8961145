"""Operator accounts as admins see them: list, disable by id (the operator API's use cases).

Creating one is ``operators.create_operator`` (the one-time enrolment);
views never hold a password hash or a TOTP secret.
"""

from __future__ import annotations

from sqlalchemy import select

from shared.db.tables import operators
from shared.db.uow import UnitOfWork
from shared.services import operators as operator_service
from shared.services.audit import Actor
from shared.services.errors import NotFound
from shared.services.views import unix_seconds


def operator_json(row) -> dict:
    return {
        "id": row.id,
        "object": "operator",
        "email": row.email,
        "role": row.role,
        "password_temporary": row.password_temporary,
        "disabled": row.disabled_at is not None,
        "disabled_at": unix_seconds(row.disabled_at),
        "created": unix_seconds(row.created_at),
    }


def list_operators(uow: UnitOfWork) -> list[dict]:
    """Every operator account, oldest first (a handful: no pagination)."""
    rows = uow.conn.execute(
        select(operators).order_by(operators.c.created_at, operators.c.id)
    ).all()
    return [operator_json(r) for r in rows]


def disable(uow: UnitOfWork, actor: Actor | str, operator_id: str) -> dict:
    """``operators.disable_operator`` for an operator named by id; the account as it is now."""
    row = uow.conn.execute(select(operators.c.email).where(operators.c.id == operator_id)).first()
    if row is None:
        raise NotFound("operator", operator_id, "operator_id")
    operator_service.disable_operator(uow, row.email, actor)
    return operator_json(
        uow.conn.execute(select(operators).where(operators.c.id == operator_id)).one()
    )
