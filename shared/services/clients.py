"""API clients: create, rotate a secret, revoke, list (the CLI's ``client`` commands).

A client's secret is shown once, when it is made; only its hash is stored.
Rotating keeps the old hash working until the overlap ends, as webhook secrets
do, so a merchant can roll its servers over without a failed token call.
Revoking is final: the client authenticates no more, every refresh token it
holds is revoked, and the API's revocation list refuses its access tokens
(shared/services/revocations.py).

Creating, rotating and revoking are audited (``actor``) in the caller's
transaction; the audit row never holds a secret or its hash.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import func, insert, select, update

from shared.db.tables import api_clients, merchants
from shared.db.tables import refresh_tokens as rt
from shared.db.uow import UnitOfWork
from shared.domain import scopes as S
from shared.security.tokens import hash_secret
from shared.services import audit
from shared.services.audit import Actor
from shared.services.errors import NotFound, ServiceError
from shared.services.ids import new_id


def new_secret() -> str:
    """A client secret: ``cs_`` + 32 random bytes, base64url."""
    return "cs_" + secrets.token_urlsafe(32)


def create_client(
    uow: UnitOfWork,
    merchant_id: str,
    scopes: tuple[str, ...] = S.ALL_SCOPES,
    cert_sha256: str | None = None,
    *,
    actor: Actor | str | None = None,
) -> dict:
    """A new client of ``merchant_id``; its secret is returned only here."""
    found = uow.conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first()
    if found is None:
        raise NotFound("merchant", merchant_id, "merchant")
    client_id, secret = new_id("ci"), new_secret()
    uow.conn.execute(
        insert(api_clients).values(
            client_id=client_id,
            merchant_id=merchant_id,
            secret_hash=hash_secret(secret),
            scopes=S.text(scopes),
            cert_sha256=cert_sha256,
        )
    )
    audit.record_if(
        uow,
        actor,
        "client.create",
        client_id,
        after={
            "client_id": client_id,
            "merchant_id": merchant_id,
            "scopes": list(S.canonical(scopes)),
            "cert_sha256": cert_sha256,
        },
    )
    return {
        "merchant_id": merchant_id,
        "client_id": client_id,
        "client_secret": secret,
        "scopes": list(S.canonical(scopes)),
        "cert_sha256": cert_sha256,
    }


def rotate_secret(
    uow: UnitOfWork, client_id: str, overlap_h: float, *, actor: Actor | str | None = None
) -> dict:
    """A new secret (returned only here); the old one authenticates until the overlap ends."""
    if overlap_h < 0:
        raise ServiceError("overlap must not be negative", "overlap_h")
    client = _live_client(uow, client_id)
    secret = new_secret()
    ends = uow.conn.execute(select(func.now() + timedelta(hours=overlap_h))).scalar_one()
    uow.conn.execute(
        update(api_clients)
        .where(api_clients.c.client_id == client.client_id)
        .values(
            secret_hash=hash_secret(secret),
            # One previous secret is kept: rotating again ends the last overlap.
            previous_secret_hash=client.secret_hash if overlap_h else None,
            previous_secret_expires_at=ends if overlap_h else None,
        )
    )
    expires = ends.isoformat() if overlap_h else None
    old = client.previous_secret_expires_at
    audit.record_if(
        uow,
        actor,
        "client.rotate_secret",
        client.client_id,
        before={"previous_secret_expires_at": old.isoformat() if old else None},
        after={"previous_secret_expires_at": expires, "overlap_h": overlap_h},
    )
    return {
        "client_id": client.client_id,
        "client_secret": secret,
        "previous_secret_expires_at": expires,
    }


def revoke_client(uow: UnitOfWork, client_id: str, *, actor: Actor | str | None = None) -> dict:
    """Revoke a client and every refresh token it holds (again: nothing more happens)."""
    client = _client(uow, client_id)
    revoked_at = client.revoked_at
    if revoked_at is None:
        revoked_at = uow.conn.execute(
            update(api_clients)
            .where(api_clients.c.client_id == client_id)
            .values(revoked_at=func.now())
            .returning(api_clients.c.revoked_at)
        ).scalar_one()
    killed = uow.conn.execute(
        update(rt)
        .where(rt.c.client_id == client_id, rt.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    ).rowcount
    audit.record_if(
        uow,
        actor,
        "client.revoke",
        client_id,
        before={"revoked_at": client.revoked_at.isoformat() if client.revoked_at else None},
        after={"revoked_at": revoked_at.isoformat(), "refresh_tokens_revoked": killed},
    )
    return {
        "client_id": client_id,
        "revoked_at": revoked_at.isoformat(),
        "refresh_tokens_revoked": killed,
    }


def list_clients(uow: UnitOfWork, merchant_id: str) -> dict:
    """The merchant's clients, oldest first, without secrets."""
    found = uow.conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first()
    if found is None:
        raise NotFound("merchant", merchant_id, "merchant")
    rows = uow.conn.execute(
        select(api_clients)
        .where(api_clients.c.merchant_id == merchant_id)
        .order_by(api_clients.c.created_at, api_clients.c.client_id)
    ).all()
    return {"merchant_id": merchant_id, "clients": [_public(r) for r in rows]}


def recently_revoked(uow: UnitOfWork, within_s: int) -> frozenset[str]:
    """Clients revoked in the last ``within_s`` seconds (older ones' tokens have all expired)."""
    rows = uow.conn.execute(
        select(api_clients.c.client_id).where(
            api_clients.c.revoked_at > func.now() - timedelta(seconds=within_s)
        )
    )
    return frozenset(r.client_id for r in rows)


def _public(row) -> dict:
    return {
        "client_id": row.client_id,
        "scopes": list(S.canonical(row.scopes.split())),
        "cert_sha256": row.cert_sha256,
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "previous_secret_expires_at": (
            row.previous_secret_expires_at.isoformat() if row.previous_secret_expires_at else None
        ),
    }


def _client(uow: UnitOfWork, client_id: str):
    row = uow.conn.execute(
        select(api_clients).where(api_clients.c.client_id == client_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound("client", client_id, "client")
    return row


def _live_client(uow: UnitOfWork, client_id: str):
    row = _client(uow, client_id)
    if row.revoked_at is not None:
        raise ServiceError(f"client {client_id} is revoked", "client")
    return row
