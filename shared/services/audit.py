"""The audit trail: one appended ``audit_log`` row per operator action, in its transaction.

Written through the caller's unit of work, so the row commits with the change
it describes or not at all. ``before``/``after`` are what changed, never a
secret (a password, a TOTP secret, a token).
"""

from __future__ import annotations

from sqlalchemy import insert

from shared.db.tables import audit_log
from shared.db.uow import UnitOfWork


def record(
    uow: UnitOfWork,
    actor: str,
    action: str,
    target: str | None,
    *,
    before: dict | None = None,
    after: dict | None = None,
    request_id: str | None = None,
    source_ip: str | None = None,
) -> None:
    uow.conn.execute(
        insert(audit_log).values(
            actor=actor,
            action=action,
            target=target,
            before=before,
            after=after,
            request_id=request_id,
            source_ip=source_ip,
        )
    )
