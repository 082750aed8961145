"""The audit trail: one appended ``audit_log`` row per operator action, in its transaction.

Written through the caller's unit of work, so the row commits with the change
it describes or not at all. ``before``/``after`` are what changed, never a
secret (a password, a TOTP secret, a token).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert

from shared.db.tables import audit_log
from shared.db.uow import UnitOfWork


@dataclass(frozen=True)
class Actor:
    """Who acts, as the audit trail names them, and where the request came from.

    ``name``: ``operator:<email>`` for the operator API and console,
    ``cli:<os user>`` for the CLI (``cli.operators.actor``).
    """

    name: str
    request_id: str | None = None
    source_ip: str | None = None


def record_as(
    uow: UnitOfWork,
    actor: Actor,
    action: str,
    target: str | None,
    *,
    before: dict | None = None,
    after: dict | None = None,
) -> None:
    """``record`` for an ``Actor``: its name, request id and source IP."""
    record(
        uow,
        actor.name,
        action,
        target,
        before=before,
        after=after,
        request_id=actor.request_id,
        source_ip=actor.source_ip,
    )


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


def as_actor(actor: Actor | str) -> Actor:
    """An ``Actor`` from either form a use case is given (a CLI passes its name only)."""
    return actor if isinstance(actor, Actor) else Actor(actor)


def record_if(
    uow: UnitOfWork,
    actor: Actor | str | None,
    action: str,
    target: str | None,
    *,
    before: dict | None = None,
    after: dict | None = None,
) -> None:
    """``record_as`` for a use case whose actor is optional.

    Every entry point (the CLI, the operator API) names its actor; ``None`` is
    for code that is nobody's action (a test's or a benchmark's own set-up),
    which writes no row.
    """
    if actor is not None:
        record_as(uow, as_actor(actor), action, target, before=before, after=after)
