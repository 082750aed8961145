"""Idempotency keys, after Brandur Leach's Postgres design.

Phase 1 (``begin``, its own short committed transaction) claims the key or
finds it. Phase 2 (``complete``) records the response in the *same*
transaction as the request's effect, so a crash can never keep one without
the other. A failure that is not the client's (5xx) ``release``s the key so
the client may retry it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db.tables import idempotency_keys as ik
from shared.services.errors import ServiceError

MAX_KEY_LEN = 255


class KeyReused(ServiceError):
    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"


class KeyInUse(ServiceError):
    status = 409
    code = "idempotency_key_in_use"
    title = "Idempotency key in use"


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
    conn: Connection,
    merchant_id: str,
    key: str,
    method: str,
    path: str,
    req_hash: str,
    *,
    lock_timeout_s: int,
    retention_h: int,
) -> Replay | None:
    """Claim ``key`` for this request (None: go ahead) or return the stored response."""
    stale = ik.c.created_at < func.now() - _hours(retention_h)
    fresh = dict(
        request_method=method,
        request_path=path,
        request_hash=req_hash,
        response_status=None,
        response_body=None,
        locked_at=func.now(),
        created_at=func.now(),
    )
    # A key past its retention is treated as absent: overwrite it in place.
    claimed = conn.execute(
        pg_insert(ik)
        .values(merchant_id=merchant_id, key=key, **fresh)
        .on_conflict_do_update(index_elements=[ik.c.merchant_id, ik.c.key], set_=fresh, where=stale)
        .returning(ik.c.key)
    ).first()
    if claimed is not None:
        return None
    row = conn.execute(
        select(ik, (ik.c.locked_at < func.now() - _seconds(lock_timeout_s)).label("expired")).where(
            ik.c.merchant_id == merchant_id, ik.c.key == key
        )
    ).one()
    if (row.request_method, row.request_path, row.request_hash) != (method, path, req_hash):
        raise KeyReused(
            "Keys for idempotent requests can only be used with the same method, path and "
            "parameters as the first request. Use a new Idempotency-Key.",
            "Idempotency-Key",
        )
    if row.response_status is not None:
        return Replay(row.response_status, row.response_body)
    if row.locked_at is not None and not row.expired:
        raise KeyInUse(
            "A request with this Idempotency-Key is still being processed; retry later.",
            "Idempotency-Key",
        )
    # The first attempt died mid-flight: take the key over, unless a concurrent
    # retry already did (compare-and-set on the lock we saw).
    taken = conn.execute(
        update(ik)
        .where(
            ik.c.merchant_id == merchant_id,
            ik.c.key == key,
            ik.c.response_status.is_(None),
            ik.c.locked_at.is_(None) if row.locked_at is None else ik.c.locked_at == row.locked_at,
        )
        .values(locked_at=func.now())
    ).rowcount
    if not taken:
        raise KeyInUse(
            "A retry with this Idempotency-Key is already in progress.", "Idempotency-Key"
        )
    return None


def complete(conn: Connection, merchant_id: str, key: str, status: int, body: dict) -> None:
    """Record the response; call inside the transaction that holds the request's effect."""
    conn.execute(
        update(ik)
        .where(ik.c.merchant_id == merchant_id, ik.c.key == key)
        .values(response_status=status, response_body=body, locked_at=None)
    )


def release(conn: Connection, merchant_id: str, key: str) -> None:
    """Forget an unfinished key (the request failed on our side), so a retry can run."""
    conn.execute(
        delete(ik).where(
            ik.c.merchant_id == merchant_id, ik.c.key == key, ik.c.response_status.is_(None)
        )
    )


def prune(conn: Connection, older_than_hours: int) -> int:
    """Delete keys older than the retention period; return how many (scheduler job)."""
    return conn.execute(
        delete(ik).where(ik.c.created_at < func.now() - _hours(older_than_hours))
    ).rowcount


def _hours(n: int) -> timedelta:
    return timedelta(hours=n)


def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)
