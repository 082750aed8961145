"""Keyset pages, newest first: how every list in the API and the operator's pages pages.

A page is ordered by ``(created_at, id)`` descending and continues after the row its
``starting_after`` id names, so a row inserted meanwhile never shifts a page (no OFFSET).
"""

from __future__ import annotations

from sqlalchemy import Table, and_, or_, select

from shared.db.uow import UnitOfWork
from shared.services.errors import NotFound


def newest_first(
    uow: UnitOfWork,
    table: Table,
    where: list,
    *,
    kind: str,
    limit: int,
    starting_after: str | None,
    scope: tuple = (),
    columns: tuple = (),
) -> tuple[list, bool]:
    """(rows, has_more): ``table``'s rows matching ``where``, newest first, after the row
    ``starting_after`` names; NotFound(``kind``) when no such row lies within ``scope``
    (say, this merchant's rows). ``columns``: what to select (default: the whole row)."""
    query = select(*(columns or (table,))).where(*where)
    if starting_after:
        cursor = uow.conn.execute(
            select(table.c.created_at, table.c.id).where(table.c.id == starting_after, *scope)
        ).first()
        if cursor is None:
            raise NotFound(kind, starting_after, "starting_after")
        query = query.where(
            or_(
                table.c.created_at < cursor.created_at,
                and_(table.c.created_at == cursor.created_at, table.c.id < cursor.id),
            )
        )
    rows = uow.conn.execute(
        query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)
    ).all()
    return rows[:limit], len(rows) > limit
