"""Binding an API client to a TLS client certificate (RFC 8705).

TEMPORARY setter: ``clearhouse client create --cert-sha256`` (the OAuth
lifecycle work) sets the same column; keep whichever the merge settles on.
"""

from __future__ import annotations

from sqlalchemy import update

from shared.db.tables import api_clients
from shared.db.uow import UnitOfWork
from shared.domain.cert_binding import normalize_sha256
from shared.services.errors import NotFound, ServiceError


def bind_certificate(uow: UnitOfWork, client_id: str, cert_sha256: str | None) -> dict:
    """Bind a client to the certificate with this SHA-256 (hex); None unbinds it."""
    digest = None
    if cert_sha256 is not None:
        try:
            digest = normalize_sha256(cert_sha256)
        except ValueError as exc:
            raise ServiceError(str(exc), "cert_sha256") from None
    done = uow.conn.execute(
        update(api_clients).where(api_clients.c.client_id == client_id).values(cert_sha256=digest)
    ).rowcount
    if not done:
        raise NotFound("API client", client_id, "client_id")
    return {"client_id": client_id, "cert_sha256": digest}
