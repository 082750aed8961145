"""Webhook delivery: find what is due, claim it, prepare it, record the attempts."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, text, update

from shared.db.tables import events, webhook_attempts
from shared.db.tables import webhook_deliveries as wd
from shared.db.tables import webhook_endpoints as we
from shared.db.uow import UnitOfWork
from shared.domain import webhooks as W
from shared.observability import metrics
from shared.security.vault import VaultError
from shared.services import views, webhook_endpoints
from shared.services.webhook_secrets import signing_secrets

log = logging.getLogger(__name__)
RESPONSE_BODY_MAX = 1024


@dataclass(frozen=True)
class Send:
    """One claimed delivery, ready to POST (``body`` is exactly what gets signed)."""

    delivery_id: str
    merchant_id: str
    url: str
    attempts: int
    created_at: datetime
    body: bytes
    secrets: tuple[str, ...]
    endpoint_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    latency_ms: int | None = None
    response_body: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300


def event_body(row) -> bytes:
    """The bytes a webhook POSTs (and signs) for an event: compact, keys sorted."""
    return json.dumps(views.event_json(row), separators=(",", ":"), sort_keys=True).encode()


def due(uow: UnitOfWork, limit: int, first_attempt_grace_s: float = 5.0) -> list[str]:
    """Pending deliveries that are due: retries, and first attempts whose message was lost."""
    # A first attempt is normally sent by the message enqueued after commit
    # (or, for a new intent's event, by the outbox relay's); only pick it up
    # once that message has had a few seconds to arrive.
    grace = func.now() - timedelta(seconds=first_attempt_grace_s)
    query = (
        select(wd.c.id)
        .where(wd.c.status == "pending", wd.c.next_attempt_at <= func.now())
        .where((wd.c.attempts > 0) | (wd.c.next_attempt_at <= grace))
        .order_by(wd.c.next_attempt_at)
        .limit(limit)
    )
    return list(uow.conn.execute(query).scalars())


def claim(uow: UnitOfWork, ids: list[str], lease_s: float) -> list:
    """Lease due deliveries (compare-and-set): not due again until the lease ends."""
    # Concurrent claimers serialize on the row lock; the loser re-checks the
    # WHERE, finds next_attempt_at in the future and gets nothing back.
    return uow.conn.execute(
        update(wd)
        .where(wd.c.id.in_(list(ids)), wd.c.status == "pending", wd.c.next_attempt_at <= func.now())
        .values(next_attempt_at=func.now() + timedelta(seconds=lease_s), updated_at=func.now())
        .returning(
            wd.c.id,
            wd.c.event_id,
            wd.c.merchant_id,
            wd.c.endpoint_id,
            wd.c.url,
            wd.c.attempts,
            wd.c.created_at,
        )
    ).all()


@dataclass(frozen=True)
class Unsendable:
    """Why a claimed delivery can never be sent (``reason`` labels the metric)."""

    reason: str  # secret | endpoint_missing | event_missing
    detail: str


def prepare(uow: UnitOfWork, vault, claimed: list) -> list[Send]:
    """Load the events and endpoints of claimed deliveries; fail those that cannot be sent.

    A delivery whose event or endpoint is gone, or whose endpoint's secret does
    not decrypt (sealed with a key this vault does not hold), would fail the
    same way at every try. It is failed for good with the reason, and counted,
    so it holds back neither the rest of its batch nor itself in a retry loop.
    One whose endpoint was disabled or deleted meanwhile is canceled (not a
    fault). Database errors propagate: the task retries the batch.
    """
    if not claimed:
        return []
    now = uow.conn.execute(select(func.now())).scalar_one()
    rows = uow.conn.execute(select(events).where(events.c.id.in_({c.event_id for c in claimed})))
    bodies = {r.id: event_body(r) for r in rows}
    endpoints = _endpoints(uow, claimed)
    # Per endpoint, its secrets or why it has none: one endpoint's broken secret
    # must only fail that endpoint's deliveries.
    keys = {e.id: _secrets_or_reason(vault, e, now) for e in endpoints.values()}
    sends, unsendable, canceled = [], [], []
    for c in claimed:
        endpoint = endpoints.get(c.endpoint_id or c.merchant_id)
        if c.event_id not in bodies:
            unsendable.append((c, Unsendable("event_missing", "event not found")))
        elif endpoint is None:
            unsendable.append((c, Unsendable("endpoint_missing", "webhook endpoint not found")))
        elif endpoint.deleted_at is not None or endpoint.status != "enabled":
            canceled.append(c.id)
        elif isinstance(keys[endpoint.id], Unsendable):
            unsendable.append((c, keys[endpoint.id]))
        else:
            sends.append(
                Send(
                    c.id,
                    c.merchant_id,
                    c.url,
                    c.attempts,
                    c.created_at,
                    bodies[c.event_id],
                    keys[endpoint.id],
                    endpoint.id,
                )
            )
    if canceled:
        why = "webhook endpoint disabled or deleted"
        webhook_endpoints.cancel_deliveries(uow, why, wd.c.id.in_(canceled))
    if unsendable:
        fail_unsendable(uow, unsendable, now)
    return sends


def _endpoints(uow: UnitOfWork, claimed: list) -> dict:
    """{endpoint id: row} of the claimed deliveries' endpoints, deleted ones too.

    A delivery without an endpoint (written by a process of the version before
    0015, during a rolling deploy) goes to its merchant's first endpoint: those
    are under the merchant's id.
    """
    ids = {c.endpoint_id for c in claimed if c.endpoint_id}
    found = {r.id: r for r in uow.conn.execute(select(we).where(we.c.id.in_(ids)))} if ids else {}
    legacy = {c.merchant_id for c in claimed if not c.endpoint_id}
    if legacy:
        found.update(webhook_endpoints.firsts(uow, legacy))
    return found


def _secrets_or_reason(vault, endpoint, now: datetime) -> tuple[str, ...] | Unsendable:
    try:
        return tuple(signing_secrets(vault, endpoint, now))
    except VaultError as exc:
        # VaultError messages never hold key material or plaintext.
        return Unsendable("secret", f"webhook secret cannot be decrypted ({exc})")
    except Exception as exc:
        # Decrypting touches no database, so this is never a transient DB
        # error: whatever it is would recur at every try. Class name only.
        return Unsendable("secret", f"webhook secret unusable ({type(exc).__name__})")


def fail_unsendable(uow: UnitOfWork, items: list, now: datetime) -> None:
    """Fail claimed deliveries [(claimed row, Unsendable)] for good, with their reason.

    Each gets an attempt (no status code, the reason as its error) so the
    delivery's history says why nothing was sent.
    """
    # The claim in this same transaction holds these rows' locks: no fence needed.
    failed = []
    for c, why in items:
        error = f"not sent: {why.detail}"
        row = uow.conn.execute(
            update(wd)
            .where(wd.c.id == c.id, wd.c.status == "pending")
            .values(
                status="failed",
                attempts=wd.c.attempts + 1,
                next_attempt_at=None,
                last_status_code=None,
                last_error=error,
                completed_at=now,
                updated_at=now,
            )
            .returning(wd.c.id, wd.c.attempts)
        ).first()
        if row is not None:
            failed.append((row, c.merchant_id, error, why.reason))
    if not failed:
        return
    uow.conn.execute(
        insert(webhook_attempts),
        [
            {"delivery_id": r.id, "attempt": r.attempts, "error": error, "outcome": "failed"}
            for r, _, error, _ in failed
        ],
    )
    per_cause: dict[tuple[str, str], int] = {}
    for _, merchant_id, error, _ in failed:
        per_cause[merchant_id, error] = per_cause.get((merchant_id, error), 0) + 1
    for (merchant_id, error), n in per_cause.items():
        log.error("%d webhook deliveries of %s failed: %s", n, merchant_id, error)
    metrics.webhook_prepare_failures(uow, [reason for *_, reason in failed])


def release(uow: UnitOfWork, sends: list[Send]) -> None:
    """Give back the lease of claimed deliveries that were not sent: due again now.

    For deliveries that waited too long behind their merchant's own sends:
    the dispatcher picks them up on a later run instead of them holding a
    lease (and a place in memory) behind a slow receiver.
    """
    if not sends:
        return
    # Fenced like record_attempts: only while still at the attempt we claimed.
    uow.conn.execute(
        update(wd)
        .where(
            wd.c.id == bindparam("delivery_id"),
            wd.c.status == "pending",
            wd.c.attempts == bindparam("seen"),
        )
        .values(next_attempt_at=func.now(), updated_at=func.now()),
        [{"delivery_id": s.delivery_id, "seen": s.attempts} for s in sends],
    )


def record_attempts(
    uow: UnitOfWork, sends: list[Send], outcomes: list[Outcome], *, max_age_s, scale, rng=None
) -> dict[str, str]:
    """Store the attempts and move each delivery on: succeeded, rescheduled or failed."""
    now = uow.conn.execute(select(func.now())).scalar_one()
    rows = []
    for send, outcome in zip(sends, outcomes, strict=True):
        status, next_at = "succeeded", None
        if not outcome.ok:
            retry_at = now + timedelta(seconds=W.next_delay(send.attempts + 1, rng, scale))
            expired = retry_at > send.created_at + timedelta(seconds=max_age_s * scale)
            status, next_at = ("failed", None) if expired else ("pending", retry_at)
        rows.append((send, outcome, status, next_at))
    params: dict = {"now": now}
    values = []
    for i, (send, outcome, status, next_at) in enumerate(rows):
        params.update(
            {
                f"id{i}": send.delivery_id,
                f"seen{i}": send.attempts,
                f"status{i}": status,
                f"next{i}": next_at,
                f"code{i}": outcome.status_code,
                f"error{i}": outcome.error,
            }
        )
        values.append(
            f"(:id{i}, CAST(:seen{i} AS int), :status{i}, CAST(:next{i} AS timestamptz),"
            f" CAST(:code{i} AS int), CAST(:error{i} AS text))"
        )
    # One statement for the whole batch. attempts is the fence: if our lease
    # ran out and another worker already recorded this attempt, ours changes
    # nothing (and is not stored).
    moved = set(
        uow.conn.execute(
            text(
                "UPDATE webhook_deliveries AS d SET attempts = v.seen + 1, status = v.status,"
                " next_attempt_at = v.next_at, last_status_code = v.code, last_error = v.error,"
                " completed_at = CASE WHEN v.status = 'pending' THEN NULL ELSE :now END,"
                " updated_at = :now"
                f" FROM (VALUES {', '.join(values)}) AS v(id, seen, status, next_at, code, error)"
                " WHERE d.id = v.id AND d.status = 'pending' AND d.attempts = v.seen"
                " RETURNING d.id"
            ),
            params,
        ).scalars()
    )
    stored = [r for r in rows if r[0].delivery_id in moved]
    if stored:
        uow.conn.execute(
            insert(webhook_attempts),
            [
                {
                    "delivery_id": send.delivery_id,
                    "attempt": send.attempts + 1,
                    "status_code": outcome.status_code,
                    "latency_ms": outcome.latency_ms,
                    "response_body": (outcome.response_body or "")[:RESPONSE_BODY_MAX] or None,
                    "error": outcome.error,
                    "outcome": "succeeded" if outcome.ok else "failed",
                }
                for send, outcome, _, _ in stored
            ],
        )
    metrics.webhooks_delivered(
        uow,
        [
            ((now - send.created_at).total_seconds(), send.attempts == 0)
            for send, _, status, _ in stored
            if status == "succeeded"
        ],
    )
    return {send.delivery_id: status for send, _, status, _ in stored}
