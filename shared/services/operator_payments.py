"""What operators do to payments (any merchant's): search, look one up, refund, redeliver.

The operator API and the web console call these same functions. Reads span
every merchant; each act goes through the merchant-side use case (so the same
rules refuse it) and appends its audit row in the same unit of work, so the
change and its trace commit together or not at all. The blocklist, report
re-runs and the audit listing live in ``operator_admin`` and are re-exported here.
"""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import select

from shared.db.tables import events, ledger_accounts, ledger_transfers, refunds, webhook_attempts
from shared.db.tables import payment_intents as pi
from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.domain import operator_filters as filters
from shared.domain import refunds as refund_rules
from shared.domain.merchant_admin import redact_url
from shared.services import audit, event_log, paging, views
from shared.services import refunds as refund_service
from shared.services.audit import Actor
from shared.services.errors import NotFound

# The console and the API find every operator use case here.
from shared.services.operator_admin import (
    block,
    list_audit,
    list_blocklist,
    rerun_daily_report,
    unblock,
)

__all__ = [
    "block",
    "intent_detail",
    "list_audit",
    "list_blocklist",
    "redeliver",
    "refund",
    "rerun_daily_report",
    "search_intents",
    "unblock",
]


def search_intents(
    uow: UnitOfWork,
    *,
    merchant: str | None = None,
    status: str | None = None,
    last4: str | None = None,
    created_gte=None,
    created_lte=None,
    limit: int = 20,
    starting_after: str | None = None,
) -> tuple[list[dict], bool]:
    """Intents of every merchant, newest first; each the merchant API's JSON plus ``merchant``."""
    where = []
    if merchant:
        where.append(pi.c.merchant_id == merchant)
    if (wanted := filters.status(status)) is not None:
        where.append(pi.c.status == wanted)
    if (digits := filters.last4(last4)) is not None:
        where.append(pi.c.card_last4 == digits)
    if (since := filters.instant(created_gte, "created_gte")) is not None:
        where.append(pi.c.created_at >= since)
    if (until := filters.instant(created_lte, "created_lte")) is not None:
        where.append(pi.c.created_at <= until)
    rows, has_more = paging.newest_first(
        uow, pi, where, kind="payment_intent", limit=limit, starting_after=starting_after
    )
    return [_with_merchant(r) for r in rows], has_more


def intent_detail(uow: UnitOfWork, intent_id: str) -> dict:
    """One intent with its events, webhook deliveries and attempts, refunds, ledger transfers."""
    row = _intent(uow, intent_id)
    refund_rows = uow.conn.execute(
        select(refunds)
        .where(refunds.c.payment_intent_id == row.id)
        .order_by(refunds.c.created_at, refunds.c.id)
    ).all()
    # A refund's events name the refund, not the intent.
    objects = [row.id, *(r.id for r in refund_rows)]
    event_rows = uow.conn.execute(
        select(events)
        .where(events.c.object_id.in_(objects), events.c.merchant_id == row.merchant_id)
        .order_by(events.c.created_at, events.c.id)
    ).all()
    return {
        "object": "operator_payment_intent",
        "payment_intent": _with_merchant(row),
        "events": [views.event_json(e) for e in event_rows],
        "webhook_deliveries": _deliveries(uow, [e.id for e in event_rows]),
        "refunds": [views.refund_json(r) for r in refund_rows],
        "ledger_transfers": _transfers(uow, row.id),
    }


def refund(
    uow: UnitOfWork, actor: Actor, intent_id: str, amount: int | None, reason: str | None = None
) -> dict:
    """Refund on the merchant's behalf (the merchant API's rules), audited as ``refund.create``."""
    body = {"payment_intent": intent_id, "amount": amount, "reason": reason}
    request = refund_rules.validate_create({k: v for k, v in body.items() if v is not None})
    # Locked now (refunds.create locks it again): the audit row's before is what it refunds from.
    before = _intent(uow, intent_id, lock=True)
    row = refund_service.create(uow, before.merchant_id, request, actor.request_id)
    audit.record_as(
        uow,
        actor,
        "refund.create",
        intent_id,
        before={"amount_refunded": before.amount_refunded},
        after={
            "refund": row.id,
            "amount": row.amount,
            "currency": row.currency,
            "reason": row.reason,
            "amount_refunded": before.amount_refunded + row.amount,
        },
    )
    return views.refund_json(row)


def redeliver(uow: UnitOfWork, actor: Actor, event_id: str, endpoint_id: str | None = None):
    """A new webhook delivery of any merchant's event, audited as ``event.redeliver``.

    To ``endpoint_id``, or the merchant's only enabled endpoint receiving its type.
    """
    merchant_id = uow.conn.execute(
        select(events.c.merchant_id).where(events.c.id == event_id)
    ).scalar()
    if merchant_id is None:
        raise NotFound("event", event_id)
    row = event_log.redeliver(uow, merchant_id, event_id, endpoint_id)
    after = {"delivery": row.id, "endpoint": row.endpoint_id, "url": redact_url(row.url)}
    audit.record_as(uow, actor, "event.redeliver", event_id, after=after)
    return views.delivery_json(row)


def _intent(uow: UnitOfWork, intent_id: str, *, lock: bool = False):
    query = select(pi).where(pi.c.id == intent_id)
    row = uow.conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("payment_intent", intent_id)
    return row


def _with_merchant(row) -> dict:
    return {**views.intent_json(row), "merchant": row.merchant_id}


def _transfers(uow: UnitOfWork, intent_id: str) -> list[dict]:
    debit, credit = ledger_accounts.alias("debit"), ledger_accounts.alias("credit")
    t = ledger_transfers
    rows = uow.conn.execute(
        select(t, debit.c.code.label("debit_code"), credit.c.code.label("credit_code"))
        .join(debit, debit.c.id == t.c.debit_account_id)
        .join(credit, credit.c.id == t.c.credit_account_id)
        .where(t.c.intent_id == intent_id)
        .order_by(t.c.id)
    ).all()
    return [
        {
            "object": "ledger_transfer",
            "id": r.id,
            "kind": r.kind,
            "reason": r.reason,
            "amount": r.amount,
            "currency": r.currency,
            "debit_account": r.debit_code,
            "credit_account": r.credit_code,
            "pending_id": r.pending_id,
            "created": int(r.created_at.astimezone(UTC).timestamp()),
        }
        for r in rows
    ]


def _deliveries(uow: UnitOfWork, event_ids: list[str]) -> list[dict]:
    """The events' webhook deliveries, oldest first, each with every attempt's status code."""
    if not event_ids:
        return []
    rows = uow.conn.execute(
        select(wd).where(wd.c.event_id.in_(event_ids)).order_by(wd.c.created_at, wd.c.id)
    ).all()
    attempts: dict[str, list] = {r.id: [] for r in rows}
    if rows:
        found = uow.conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id.in_(list(attempts)))
            .order_by(webhook_attempts.c.delivery_id, webhook_attempts.c.attempt)
        )
        for a in found:
            attempts[a.delivery_id].append(a)
    return [views.delivery_json(r, attempts[r.id]) for r in rows]
