"""Merchant webhook endpoints: the URL policy, setting the URL, rotating the secret.

Setting the URL and rotating the secret are audited (``actor``) in the
caller's transaction: the URL without its credentials, never a secret.
"""

from __future__ import annotations

import secrets
import socket
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, update

from shared.db.tables import merchants
from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.domain import webhooks as W
from shared.domain.merchant_admin import redact_url
from shared.services import audit
from shared.services.audit import Actor
from shared.services.errors import NotFound, ServiceError


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


def rotate_secret(
    uow: UnitOfWork,
    vault,
    merchant_id: str,
    overlap_h: float,
    *,
    actor: Actor | str | None = None,
) -> dict:
    """A new signing secret (returned only here); the old one also signs until the overlap ends."""
    m = uow.conn.execute(
        select(merchants).where(merchants.c.id == merchant_id).with_for_update()
    ).first()
    if m is None:
        raise NotFound("merchant", merchant_id)
    if overlap_h < 0:
        raise ServiceError("overlap must not be negative", "overlap_hours")
    new = "whsec_" + secrets.token_urlsafe(32)
    ends = uow.conn.execute(select(func.now() + timedelta(hours=overlap_h))).scalar_one()
    uow.conn.execute(
        merchants.update()
        .where(merchants.c.id == merchant_id)
        .values(
            webhook_secret_enc=vault.encrypt(new, aad=merchant_id),
            # Only one previous secret is kept: rotating again ends the last overlap.
            webhook_secret_prev_enc=m.webhook_secret_enc if overlap_h else None,
            webhook_secret_prev_expires_at=ends if overlap_h else None,
        )
    )
    expires = ends.isoformat() if overlap_h else None
    old_expires = m.webhook_secret_prev_expires_at
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
        "previous_secret_expires_at": ends.isoformat() if overlap_h else None,
    }


def set_url(
    uow: UnitOfWork,
    merchant_id: str,
    url: str,
    allow_private: bool,
    *,
    actor: Actor | str | None = None,
) -> dict:
    """Point the merchant's webhooks (including pending retries) at ``url``."""
    check_url(url, allow_private, "url")
    old = uow.conn.execute(
        select(merchants.c.webhook_url).where(merchants.c.id == merchant_id).with_for_update()
    ).first()
    if old is None:
        raise NotFound("merchant", merchant_id)
    uow.conn.execute(
        merchants.update().where(merchants.c.id == merchant_id).values(webhook_url=url)
    )
    # Merchants change URLs because the old one is broken: retry at the new one.
    uow.conn.execute(
        update(wd)
        .where(wd.c.merchant_id == merchant_id, wd.c.status == "pending")
        .values(url=url, updated_at=func.now())
    )
    audit.record_if(
        uow,
        actor,
        "merchant.set_webhook_url",
        merchant_id,
        before={"webhook_url": redact_url(old.webhook_url)},
        after={"webhook_url": redact_url(url)},
    )
    return {"merchant_id": merchant_id, "webhook_url": url}
