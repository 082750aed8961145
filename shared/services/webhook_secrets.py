"""Webhook signing secrets: made, sealed for their endpoint, rotated with an overlap, opened.

Each endpoint's secrets are AES-GCM ciphertexts (the vault's card keys) bound
by AAD to the endpoint's id, or, for the secrets migration 0015 copied from
the merchants row, to the merchant's id (``secret_aad``): a rotation re-seals
both under the endpoint's own id.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select

from shared.db.uow import UnitOfWork
from shared.domain.merchant_admin import MAX_OVERLAP_HOURS
from shared.security.vault import VaultError
from shared.services.errors import ServiceError


def new_secret() -> str:
    """A fresh signing secret (``whsec_`` and 256 random bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def aad_of(endpoint) -> str:
    """What an endpoint's ciphertexts are bound to: its id, or its 0015 copy's merchant id."""
    return endpoint.secret_aad or endpoint.id


def signing_secrets(vault, endpoint, now: datetime) -> list[str]:
    """The current secret, plus the previous one while its overlap lasts."""
    out = [vault.decrypt(endpoint.secret_enc, aad=aad_of(endpoint))]
    expires = endpoint.secret_prev_expires_at
    if endpoint.secret_prev_enc and expires and expires > now:
        out.append(vault.decrypt(endpoint.secret_prev_enc, aad=aad_of(endpoint)))
    return out


def check_overlap(overlap_h: float) -> None:
    """Refuse an overlap out of 0 to MAX_OVERLAP_HOURS hours (on ``overlap_hours``)."""
    if overlap_h < 0:
        raise ServiceError("overlap must not be negative", "overlap_hours")
    if overlap_h > MAX_OVERLAP_HOURS:
        raise ServiceError(f"overlap must be at most {MAX_OVERLAP_HOURS} hours", "overlap_hours")


def rotation(
    uow: UnitOfWork, vault, endpoint, overlap_h: float
) -> tuple[dict, str, datetime | None]:
    """(the endpoint's new column values, the new secret, when the old one stops signing).

    Only one previous secret is kept: rotating again ends the last overlap. With
    no overlap, or an old secret this vault cannot open (it signs nothing now
    anyway), the new secret signs alone at once.
    """
    check_overlap(overlap_h)
    new = new_secret()
    previous, ends = None, None
    if overlap_h:
        try:
            old = vault.decrypt(endpoint.secret_enc, aad=aad_of(endpoint))
            previous = vault.encrypt(old, aad=endpoint.id)
        except VaultError:
            previous = None
        if previous is not None:
            ends = uow.conn.execute(select(func.now() + timedelta(hours=overlap_h))).scalar_one()
    values = {
        "secret_enc": vault.encrypt(new, aad=endpoint.id),
        "secret_prev_enc": previous,
        "secret_prev_expires_at": ends,
        "secret_aad": None,
    }
    return values, new, ends
