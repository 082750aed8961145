"""Idempotency keys, after Brandur Leach's Postgres design.

One transaction does it all: ``begin`` takes the key (an advisory lock while
in flight) or finds its stored response, the request's effect runs, and
``complete`` stores the response in the same transaction, so a crash can
never keep one without the other, and a failure on our side (5xx) leaves no
trace, so the client may simply retry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Interval, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db.tables import idempotency_keys as ik
from shared.db.uow import UnitOfWork
from shared.services.errors import ServiceError

MAX_KEY_LEN = 255


class KeyReused(ServiceError):
    """The key was first used with another method, path or body."""

    code = "idempotency_key_reused"


class KeyInUse(ServiceError):
    """A request holding the key is still in flight."""

    code = "idempotency_key_in_use"


# Built once: constructing a statement and its cache key per request cost more
# CPU than running it (the parameters are bound at execute).
_CLAIM = text("SELECT * FROM idempotency_claim(:merchant_id, :key, :retention)").bindparams(
    bindparam("retention", type_=Interval)
)
_UPSERT = pg_insert(ik)
_COMPLETE = _UPSERT.on_conflict_do_update(
    index_elements=[ik.c.merchant_id, ik.c.key],
    set_={
        **{
            c: _UPSERT.excluded[c]
            for c in ("request_method", "request_path", "request_hash")
            + ("response_status", "response_body")
        },
        "locked_at": None,
        "created_at": func.now(),
    },
)


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict


def check_key(key: str | None) -> str | None:
    """The header's value if it is usable; ServiceError (param Idempotency-Key) if not."""
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LEN:
        raise ServiceError(
            f"Idempotency-Key must be 1 to {MAX_KEY_LEN} characters long.", "Idempotency-Key"
        )
    return key


def request_hash(
    method: str, path: str, body: object, mac: Callable[[str], str] | None = None
) -> str:
    """Digest of the request; ``mac`` keys it (bodies carry card numbers, hashes are stored)."""
    # One ASCII JSON document: unambiguous framing, and a MAC may require ASCII.
    message = json.dumps(
        [method.upper(), path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return mac(message) if mac else hashlib.sha256(message.encode()).hexdigest()


def begin(
    uow: UnitOfWork,
    merchant_id: str,
    key: str,
    method: str,
    path: str,
    req_hash: str,
    *,
    retention_h: int,
) -> Replay | None:
    """Claim ``key`` in this transaction (None: go ahead) or return the stored response.

    A transaction-scoped advisory lock marks the request in flight: a second
    request with the key fails to take it (KeyInUse) instead of waiting, and it is
    released by commit or rollback, so a crashed request never leaves it held.
    """
    # Two statements, not one: in READ COMMITTED a statement's snapshot is
    # taken before its lock is. Read together, a request could get the lock
    # just released by the first request's commit while its snapshot predates
    # that commit, see no stored response, and charge a second time. The
    # function (migration 0014) runs them as two statements in one round trip:
    # each statement of a VOLATILE function takes a fresh snapshot.
    row = uow.conn.execute(
        _CLAIM, {"merchant_id": merchant_id, "key": key, "retention": _hours(retention_h)}
    ).one()
    if not row.locked:
        raise KeyInUse(
            "A request with this Idempotency-Key is still being processed; retry later.",
            "Idempotency-Key",
        )
    if not row.found or row.stale or row.response_status is None:
        return None  # a key past its retention is treated as absent
    if (row.request_method, row.request_path, row.request_hash) != (method, path, req_hash):
        raise KeyReused(
            "Keys for idempotent requests can only be used with the same method, path and "
            "parameters as the first request. Use a new Idempotency-Key.",
            "Idempotency-Key",
        )
    return Replay(row.response_status, row.response_body)


def has_response(uow: UnitOfWork, merchant_id: str, key: str, *, retention_h: int) -> bool:
    """True if ``key`` holds a stored response within retention: its retry is a replay.

    One plain read, no lock: the admission check asks it of a request it is
    about to refuse, so that a replay (which costs the pipeline nothing) is
    still answered. A request still in flight with the key has no response yet.
    """
    fresh = ik.c.created_at >= func.now() - _hours(retention_h)
    found = uow.conn.execute(
        select(ik.c.key).where(
            ik.c.merchant_id == merchant_id,
            ik.c.key == key,
            ik.c.response_status.is_not(None),
            fresh,
        )
    ).first()
    return found is not None


def complete(
    uow: UnitOfWork,
    merchant_id: str,
    key: str,
    request: tuple[str, str, str],
    status: int,
    body: dict,
) -> None:
    """Store the response; call inside the transaction that holds the request's effect."""
    method, path, req_hash = request
    uow.conn.execute(
        _COMPLETE,
        dict(
            merchant_id=merchant_id,
            key=key,
            request_method=method,
            request_path=path,
            request_hash=req_hash,
            response_status=status,
            response_body=body,
        ),
    )


def _hours(n: int) -> timedelta:
    return timedelta(hours=n)
