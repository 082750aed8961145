"""Webhook endpoints: the URL policy, a merchant's endpoints (the API's), its first endpoint.

A merchant has several endpoints, each with its URL, secret, event types and
on/off switch; the oldest not deleted is its *first* endpoint, which the
merchant-level routes and CLI commands (set the URL, rotate the secret) act on
and which every merchant gets when it is made. Those two are audited
(``actor``) in the caller's transaction: the URL without its credentials,
never a secret.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, update

from shared.db.tables import merchants
from shared.db.tables import webhook_deliveries as wd
from shared.db.tables import webhook_endpoints as we
from shared.db.uow import UnitOfWork
from shared.domain import webhooks as W
from shared.domain.merchant_admin import redact_url
from shared.domain.webhook_endpoints import WILDCARD, EndpointChange
from shared.services import audit, paging, webhook_secrets
from shared.services.audit import Actor
from shared.services.errors import NotFound, ServiceError
from shared.services.ids import new_id

KIND = "webhook_endpoint"


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order (for the SSRF policy)."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def pin(url: str, allow_private: bool) -> tuple[W.Target | None, str]:
    """Where one send to ``url`` connects: resolved now, once, and vetted; else why not."""
    return W.pin(url, allow_private, resolve)


def check_url(url: str, allow_private: bool, param: str = "webhook_url") -> str:
    """Return ``url`` if webhooks may be sent there, else raise a ServiceError (on ``param``)."""
    ok, reason = W.url_allowed(url, allow_private, resolve)
    if not ok:
        # The URL's host only: its user:password or query may carry secrets.
        host = urlsplit(url).hostname if isinstance(url, str) else None
        raise ServiceError(f"webhook URL refused ({reason}); host {host!r}", param)
    return url


def _live(merchant_id: str) -> tuple:
    return (we.c.merchant_id == merchant_id, we.c.deleted_at.is_(None))


def get(uow: UnitOfWork, merchant_id: str, endpoint_id: str, *, lock=False, param="id"):
    """One of this merchant's endpoints; NotFound (on ``param``) if deleted or another's."""
    query = select(we).where(we.c.id == endpoint_id, *_live(merchant_id))
    row = uow.conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(KIND, endpoint_id, param)
    return row


def list_(uow: UnitOfWork, merchant_id: str, *, limit: int = 10, starting_after=None):
    """The merchant's endpoints, newest first; (rows, has_more)."""
    live = _live(merchant_id)
    return paging.newest_first(
        uow, we, list(live), kind=KIND, limit=limit, starting_after=starting_after, scope=live
    )


def create(uow: UnitOfWork, vault, merchant_id: str, change: EndpointChange, allow_private: bool):
    """A new endpoint; (row, its secret: returned only here and by a rotation)."""
    check_url(change.url, allow_private, "url")
    secret = webhook_secrets.new_secret()
    row = _insert(
        uow,
        vault,
        merchant_id,
        secret,
        url=change.url,
        enabled_events=list(change.enabled_events),
        status="disabled" if change.disabled else "enabled",
        description=change.description,
        metadata=change.metadata or {},
    )
    return row, secret


def create_first(uow: UnitOfWork, vault, merchant_id: str, url: str | None) -> str:
    """A new merchant's first endpoint (every event type; no URL yet if None); its secret."""
    secret = webhook_secrets.new_secret()
    _insert(uow, vault, merchant_id, secret, url=url, enabled_events=[WILDCARD])
    return secret


def _insert(uow: UnitOfWork, vault, merchant_id: str, secret: str, **values):
    endpoint_id = new_id("we")
    sealed = vault.encrypt(secret, aad=endpoint_id)
    return uow.conn.execute(
        insert(we)
        .values(id=endpoint_id, merchant_id=merchant_id, secret_enc=sealed, **values)
        .returning(we)
    ).one()


def update_endpoint(
    uow: UnitOfWork, merchant_id: str, endpoint_id: str, change: EndpointChange, allow_private
):
    """Change what ``change`` names; the rest stays. Returns the row as it is now.

    A new URL takes the endpoint's pending retries with it; disabling it cancels
    them (nothing is sent to a disabled endpoint; redeliver once it is enabled).
    """
    if change.url is not None:
        check_url(change.url, allow_private, "url")
    row = get(uow, merchant_id, endpoint_id, lock=True)
    values: dict = {}
    if change.url is not None:
        values["url"] = change.url
    if change.enabled_events is not None:
        values["enabled_events"] = list(change.enabled_events)
    if change.description is not None:
        values["description"] = change.description or None
    if change.metadata is not None:
        # Stripe's rule: the given keys are set, a key given "" is removed.
        merged = {**(row.metadata or {}), **change.metadata}
        values["metadata"] = {k: v for k, v in merged.items() if v != ""}
    if change.disabled is not None:
        values["status"] = "disabled" if change.disabled else "enabled"
    if not values:
        return row
    row = uow.conn.execute(
        update(we).where(we.c.id == endpoint_id).values(**values).returning(we)
    ).one()
    if "url" in values:
        _repoint(uow, endpoint_id, row.url)
    if row.status == "disabled":
        cancel_deliveries(uow, "webhook endpoint disabled", wd.c.endpoint_id == endpoint_id)
    return row


def delete(uow: UnitOfWork, merchant_id: str, endpoint_id: str) -> dict:
    """Delete an endpoint: nothing more is sent to it (its pending deliveries are canceled)."""
    get(uow, merchant_id, endpoint_id, lock=True)
    uow.conn.execute(update(we).where(we.c.id == endpoint_id).values(deleted_at=func.now()))
    cancel_deliveries(uow, "webhook endpoint deleted", wd.c.endpoint_id == endpoint_id)
    return {"id": endpoint_id, "object": KIND, "deleted": True}


def rotate(uow: UnitOfWork, vault, merchant_id: str, endpoint_id: str, overlap_h: float):
    """A new secret for one endpoint; the old one also signs until the overlap ends.

    Returns (row, the new secret: shown only here).
    """
    row = get(uow, merchant_id, endpoint_id, lock=True)
    values, secret, _ = webhook_secrets.rotation(uow, vault, row, overlap_h)
    row = uow.conn.execute(
        update(we).where(we.c.id == endpoint_id).values(**values).returning(we)
    ).one()
    return row, secret


def cancel_deliveries(uow: UnitOfWork, why: str, *where) -> int:
    """Fail the pending deliveries ``where`` names: their endpoint is off or gone.

    Not a fault (no attempt, no metric): the merchant turned the endpoint off. A
    send already in flight is not recorded (its recorder is fenced on pending).
    """
    return uow.conn.execute(
        update(wd)
        .where(wd.c.status == "pending", *where)
        .values(
            status="failed",
            next_attempt_at=None,
            last_error=f"canceled: {why}",
            completed_at=func.now(),
            updated_at=func.now(),
        )
    ).rowcount


def _repoint(uow: UnitOfWork, endpoint_id: str, url: str) -> None:
    # Merchants change URLs because the old one is broken: retry at the new one.
    uow.conn.execute(
        update(wd)
        .where(wd.c.endpoint_id == endpoint_id, wd.c.status == "pending")
        .values(url=url, updated_at=func.now())
    )


# --- the merchant's first endpoint: the merchant-level routes and CLI commands.


def first(uow: UnitOfWork, merchant_id: str, *, lock: bool = False):
    """The merchant's oldest endpoint not deleted (None if it deleted them all)."""
    query = select(we).where(*_live(merchant_id)).order_by(we.c.created_at, we.c.id).limit(1)
    return uow.conn.execute(query.with_for_update() if lock else query).first()


def firsts(uow: UnitOfWork, merchant_ids) -> dict:
    """{merchant id: its first endpoint} for those merchants that have one."""
    rows = uow.conn.execute(
        select(we)
        .where(we.c.merchant_id.in_(list(merchant_ids)), we.c.deleted_at.is_(None))
        .order_by(we.c.merchant_id, we.c.created_at, we.c.id)
        .distinct(we.c.merchant_id)
    )
    return {r.merchant_id: r for r in rows}


def _lock_merchant(uow: UnitOfWork, merchant_id: str) -> None:
    # Locked: two concurrent first-endpoint changes of one merchant take turns.
    found = uow.conn.execute(
        select(merchants.c.id).where(merchants.c.id == merchant_id).with_for_update()
    ).first()
    if found is None:
        raise NotFound("merchant", merchant_id)


def rotate_secret(
    uow: UnitOfWork,
    vault,
    merchant_id: str,
    overlap_h: float,
    *,
    actor: Actor | str | None = None,
) -> dict:
    """A new secret for the first endpoint (returned only here); the old one signs on a while."""
    webhook_secrets.check_overlap(overlap_h)
    _lock_merchant(uow, merchant_id)
    row = first(uow, merchant_id, lock=True)
    old_expires = row.secret_prev_expires_at if row is not None else None
    if row is None:
        # Every endpoint deleted: a new first one, with no URL until one is set.
        new, ends = create_first(uow, vault, merchant_id, None), None
    else:
        values, new, ends = webhook_secrets.rotation(uow, vault, row, overlap_h)
        uow.conn.execute(update(we).where(we.c.id == row.id).values(**values))
    expires = ends.isoformat() if ends else None
    audit.record_if(
        uow,
        actor,
        "merchant.rotate_webhook_secret",
        merchant_id,
        before={"previous_secret_expires_at": old_expires.isoformat() if old_expires else None},
        after={"previous_secret_expires_at": expires, "overlap_hours": overlap_h},
    )
    return {
        "merchant_id": merchant_id,
        "webhook_secret": new,
        "previous_secret_expires_at": expires,
    }


def set_url(
    uow: UnitOfWork,
    vault,
    merchant_id: str,
    url: str,
    allow_private: bool,
    *,
    actor: Actor | str | None = None,
) -> dict:
    """Point the first endpoint's webhooks (including pending retries) at ``url``.

    A merchant that deleted every endpoint gets a new first one, whose secret
    is in the answer (``webhook_secret``: shown only then).
    """
    check_url(url, allow_private, "url")
    _lock_merchant(uow, merchant_id)
    row = first(uow, merchant_id, lock=True)
    out = {"merchant_id": merchant_id, "webhook_url": url}
    if row is None:
        out["webhook_secret"] = create_first(uow, vault, merchant_id, url)
    else:
        uow.conn.execute(update(we).where(we.c.id == row.id).values(url=url))
        _repoint(uow, row.id, url)
    audit.record_if(
        uow,
        actor,
        "merchant.set_webhook_url",
        merchant_id,
        before={"webhook_url": redact_url(row.url if row is not None else None)},
        after={"webhook_url": redact_url(url)},
    )
    return out
