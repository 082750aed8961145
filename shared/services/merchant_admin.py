"""Merchants as operators see them: list, detail, suspend, resume (the console's use cases).

Views hold no secret: no webhook secret, no client secret or hash, and the
webhook URL without its credentials (``redact_url``). Suspending and resuming
are audited in the caller's transaction; the API refuses a suspended
merchant's clients (shared/services/suspensions.py).
"""

from __future__ import annotations

from sqlalchemy import func, select

from shared.db.tables import api_clients, merchant_limits, merchants
from shared.db.uow import UnitOfWork
from shared.domain import scopes as S
from shared.domain.merchant_admin import LIMIT_FIELDS, redact_url
from shared.services import audit, paging, webhook_endpoints
from shared.services.audit import Actor
from shared.services.errors import NotFound, ServiceError
from shared.services.views import unix_seconds

SUMMARY = (
    merchants.c.id,
    merchants.c.name,
    merchants.c.created_at,
    merchants.c.suspended_at,
)


def _summary(row) -> dict:
    return {
        "id": row.id,
        "object": "merchant",
        "name": row.name,
        "suspended": row.suspended_at is not None,
        "suspended_at": unix_seconds(row.suspended_at),
        "created": unix_seconds(row.created_at),
    }


def list_merchants(
    uow: UnitOfWork, *, limit: int = 50, starting_after: str | None = None
) -> tuple[list[dict], bool]:
    """Newest first, as JSON summaries; (rows, has_more). ``starting_after``: a merchant id."""
    rows, has_more = paging.newest_first(
        uow,
        merchants,
        [],
        kind="merchant",
        limit=limit,
        starting_after=starting_after,
        columns=SUMMARY,
    )
    return [_summary(r) for r in rows], has_more


def merchant_detail(uow: UnitOfWork, merchant_id: str) -> dict:
    """One merchant: name, first webhook URL (redacted), limits, threshold, suspension, clients."""
    row = _merchant(uow, merchant_id)
    limits = uow.conn.execute(
        select(merchant_limits)
        .where(merchant_limits.c.merchant_id == merchant_id)
        .order_by(merchant_limits.c.currency, merchant_limits.c.scope)
    ).all()
    endpoint = webhook_endpoints.first(uow, merchant_id)
    prev = endpoint.secret_prev_expires_at if endpoint is not None else None
    overlap_ends = unix_seconds(prev) if prev and prev > _now(uow) else None
    return _summary(row) | {
        "suspended_reason": row.suspended_reason,
        # The merchant's first webhook endpoint's (GET /v1/webhook_endpoints lists them all).
        "webhook_url": redact_url(endpoint.url if endpoint is not None else None),
        # Set while a rotated webhook secret still signs (None: no overlap).
        "webhook_secret_previous_expires_at": overlap_ends,
        "fraud_block_threshold": row.fraud_block_threshold,
        "limits": [
            {"currency": x.currency, "scope": x.scope} | {k: getattr(x, k) for k in LIMIT_FIELDS}
            for x in limits
        ],
        "clients": _clients(uow, merchant_id),
    }


def suspend(
    uow: UnitOfWork, actor: Actor | str, merchant_id: str, reason: str | None = None
) -> dict:
    """Suspend the merchant: its clients are refused from now on (in-flight payments go on)."""
    row = _merchant(uow, merchant_id, lock=True)
    if row.suspended_at is not None:
        raise ServiceError(f"merchant {merchant_id} is already suspended", "merchant_id")
    at = uow.conn.execute(
        merchants.update()
        .where(merchants.c.id == merchant_id)
        .values(suspended_at=func.now(), suspended_reason=reason)
        .returning(merchants.c.suspended_at)
    ).scalar_one()
    audit.record_as(
        uow,
        audit.as_actor(actor),
        "merchant.suspend",
        merchant_id,
        before={"suspended_at": None, "suspended_reason": None},
        after={"suspended_at": at.isoformat(), "suspended_reason": reason},
    )
    return merchant_detail(uow, merchant_id)


def resume(uow: UnitOfWork, actor: Actor | str, merchant_id: str) -> dict:
    """Lift a suspension: the merchant's clients are accepted again."""
    row = _merchant(uow, merchant_id, lock=True)
    if row.suspended_at is None:
        raise ServiceError(f"merchant {merchant_id} is not suspended", "merchant_id")
    uow.conn.execute(
        merchants.update()
        .where(merchants.c.id == merchant_id)
        .values(suspended_at=None, suspended_reason=None)
    )
    audit.record_as(
        uow,
        audit.as_actor(actor),
        "merchant.resume",
        merchant_id,
        before={
            "suspended_at": row.suspended_at.isoformat(),
            "suspended_reason": row.suspended_reason,
        },
        after={"suspended_at": None, "suspended_reason": None},
    )
    return merchant_detail(uow, merchant_id)


def _clients(uow: UnitOfWork, merchant_id: str) -> list[dict]:
    rows = uow.conn.execute(
        select(api_clients)
        .where(api_clients.c.merchant_id == merchant_id)
        .order_by(api_clients.c.created_at, api_clients.c.client_id)
    ).all()
    return [
        {
            "client_id": c.client_id,
            "scopes": list(S.canonical(c.scopes.split())),
            "cert_sha256": c.cert_sha256,
            "created": unix_seconds(c.created_at),
            "revoked_at": unix_seconds(c.revoked_at),
        }
        for c in rows
    ]


def _now(uow: UnitOfWork):
    return uow.conn.execute(select(func.now())).scalar_one()


def _merchant(uow: UnitOfWork, merchant_id: str, *, lock: bool = False):
    query = select(merchants).where(merchants.c.id == merchant_id)
    row = uow.conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("merchant", merchant_id)
    return row
