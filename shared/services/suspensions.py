"""The API's list of suspended merchants: read from Postgres about once a second.

A suspended merchant's clients are refused on every merchant route, tokens
issued before the suspension included. Reading ``merchants`` on every
request would put Postgres on the hot path, so each API process keeps the
set of suspended merchant ids and rereads it as the revocation list does
(shared/services/revocations.py, whose refresh this reuses): a stale list is
reread by the request that finds it so, others meanwhile use the last one,
and during an outage the last good list stays in force. A suspension (or a
resume) reaches every process within about ``interval_s`` plus one read.

The token endpoint reads the merchant's row itself (it reads the client's
anyway), so no new token is issued from the moment the suspension commits.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from shared.db.tables import merchants
from shared.db.uow import UnitOfWork
from shared.services.errors import ServiceError
from shared.services.revocations import REFRESH_S, RevocationList


class MerchantSuspended(ServiceError):
    """The merchant is suspended: its clients may not act (403 ``merchant_suspended``)."""

    code = "merchant_suspended"

    def __init__(self, merchant_id: str):
        super().__init__(
            f"Merchant {merchant_id} is suspended: its API clients are refused until an"
            " operator resumes it.",
            None,
        )


def suspended_ids(uow: UnitOfWork) -> frozenset[str]:
    """Every merchant suspended now (a partial index keeps this to the few)."""
    rows = uow.conn.execute(select(merchants.c.id).where(merchants.c.suspended_at.is_not(None)))
    return frozenset(r.id for r in rows)


def is_suspended(uow: UnitOfWork, merchant_id: str) -> bool:
    """Read now, in the caller's transaction (the token endpoint's check)."""
    row = uow.conn.execute(
        select(merchants.c.suspended_at).where(merchants.c.id == merchant_id)
    ).first()
    return row is not None and row.suspended_at is not None


def ensure_not_suspended(uow: UnitOfWork, merchant_id: str) -> None:
    """Raise MerchantSuspended if ``merchant_id`` is suspended (as of this transaction)."""
    if is_suspended(uow, merchant_id):
        raise MerchantSuspended(merchant_id)


class SuspensionList(RevocationList):
    """The suspended merchant ids, reread every ``interval_s`` (last good list kept)."""

    def is_suspended(self, merchant_id: str | None) -> bool:
        return self.is_revoked(merchant_id)


def from_database(new_uow: Callable[[], UnitOfWork], interval_s: float = REFRESH_S):
    """The list of the merchants suspended in Postgres, reread every ``interval_s``."""

    def read() -> frozenset[str]:
        with new_uow() as uow:
            return suspended_ids(uow)

    return SuspensionList(read, interval_s, what="the suspended merchants")
