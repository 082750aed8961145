"""Operators' blocklist, daily report re-runs and the audit trail's listing.

Shared by the operator API, the web console and the CLI. Every act is
audited in its own unit of work (``shared.services.audit``).
"""

from __future__ import annotations

from datetime import UTC, date

from sqlalchemy import and_, or_, select, tuple_

from shared.db.tables import audit_log, blocklist
from shared.db.uow import UnitOfWork
from shared.domain import operator_filters as filters
from shared.domain.validation import ValidationError
from shared.services import audit, merchants, reports
from shared.services.audit import Actor
from shared.services.errors import NotFound

__all__ = ["block", "list_audit", "list_blocklist", "rerun_daily_report", "unblock"]


def block(uow: UnitOfWork, actor: Actor, kind: str, value: str, reason: str | None = None) -> dict:
    """Blocklist a card fingerprint, wallet, IP or customer (``blocklist.add``)."""
    return merchants.block(uow, kind, value, reason, actor=actor)


def unblock(uow: UnitOfWork, actor: Actor, kind: str, value: str) -> dict:
    """Take a value off the blocklist (``blocklist.remove``); NotFound if it was not on it."""
    return merchants.unblock(uow, kind, value, actor=actor)


def list_blocklist(
    uow: UnitOfWork, *, kind: str | None = None, limit: int = 50, starting_after: str | None = None
) -> tuple[list[dict], bool]:
    """Newest first; each entry's ``id`` (``kind:value``) is the next page's cursor."""
    b = blocklist
    query = select(b)
    if (wanted := filters.block_kind(kind, required=False)) is not None:
        query = query.where(b.c.kind == wanted)
    if starting_after:
        # A kind never holds ':'; an IPv6 value may, so split at the first one only.
        cursor_kind, _, cursor_value = starting_after.partition(":")
        cursor = uow.conn.execute(
            select(b.c.created_at).where(b.c.kind == cursor_kind, b.c.value == cursor_value)
        ).first()
        if cursor is None:
            raise NotFound("blocklist entry", starting_after, "starting_after")
        query = query.where(
            or_(
                b.c.created_at < cursor.created_at,
                and_(
                    b.c.created_at == cursor.created_at,
                    tuple_(b.c.kind, b.c.value) < tuple_(cursor_kind, cursor_value),
                ),
            )
        )
    rows = uow.conn.execute(
        query.order_by(b.c.created_at.desc(), b.c.kind.desc(), b.c.value.desc()).limit(limit + 1)
    ).all()
    return [_entry_json(r) for r in rows[:limit]], len(rows) > limit


def rerun_daily_report(uow: UnitOfWork, actor: Actor, day: date | str) -> dict:
    """Rebuild, reconcile and seal one UTC day (``reports.run_daily``); ``report.rerun``."""
    day = _day(day)
    result = reports.run_daily(uow, day)
    summary = {
        "object": "daily_report_run",
        "date": result.day.isoformat(),
        "rows": result.rows,
        "sealed": result.sealed,
        "sealed_days": [d.isoformat() for d in result.sealed_days],
        "duration_ms": result.duration_ms,
        "discrepancies": result.discrepancies,
    }
    after = {k: summary[k] for k in ("rows", "sealed", "sealed_days")}
    after["discrepancies"] = result.discrepancy_count
    audit.record_as(uow, actor, "report.rerun", summary["date"], after=after)
    return summary


def list_audit(
    uow: UnitOfWork,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 50,
    starting_after: int | str | None = None,
) -> tuple[list[dict], bool]:
    """The audit trail, newest first (the order rows were appended), filtered exactly."""
    a = audit_log
    query = select(a)
    for column, wanted in ((a.c.actor, actor), (a.c.action, action), (a.c.target, target)):
        if wanted:
            query = query.where(column == wanted)
    if starting_after not in (None, ""):
        text = str(starting_after)
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise ValidationError("starting_after", "`starting_after` must be an audit entry id.")
        query = query.where(a.c.id < int(text))
    rows = uow.conn.execute(query.order_by(a.c.id.desc()).limit(limit + 1)).all()
    return [audit_json(r) for r in rows[:limit]], len(rows) > limit


def audit_json(row) -> dict:
    """One audit entry as the API and console show it."""
    return {
        "object": "audit_entry",
        "id": row.id,
        "at": int(row.at.astimezone(UTC).timestamp()),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "request_id": row.request_id,
        "source_ip": row.source_ip,
        "before": row.before,
        "after": row.after,
    }


def _entry_json(row) -> dict:
    return {
        "object": "blocklist_entry",
        "id": f"{row.kind}:{row.value}",
        "kind": row.kind,
        "value": row.value,
        "reason": row.reason,
        "created": int(row.created_at.astimezone(UTC).timestamp()),
    }


def _day(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError("date", f"`date` must be a day, YYYY-MM-DD: {value!r}.") from None
