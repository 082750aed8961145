"""Erase a customer's personal data on request, keeping every financial record.

One transaction: the customer's intents (locked, in id order, as every stage
locks them), their refunds' metadata, every stored JSON copy of them (events,
which webhooks are built from; idempotency responses) and the receivers'
answers to those webhooks. Ids, amounts, statuses and the ledger stay.

The erasure is remembered by a keyed hash of (merchant, customer), never the
value, so a repeat answers the same erasure: it erases what has appeared
since (new intents with that customer), and emits an event and an audit row
only when it erased something or is the first.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db.tables import customer_erasures as ce
from shared.db.tables import events, idempotency_keys, refunds, webhook_attempts
from shared.db.tables import payment_intents as pi
from shared.db.tables import webhook_deliveries as wd
from shared.db.uow import UnitOfWork
from shared.domain import erasure as E
from shared.services import audit, views
from shared.services import events as event_writer
from shared.services.ids import new_id

# What an erasure counts in its audit row (rows rewritten, by kind).
COUNTED = ("intents", "refunds", "events", "idempotency_responses", "webhook_answers")


def erase_customer(uow: UnitOfWork, vault, merchant_id: str, customer: str, actor) -> dict:
    """Tombstone ``customer``'s personal data at ``merchant_id``; return the erasure."""
    record, first = _record(
        uow, merchant_id, vault.fingerprint(E.customer_key(merchant_id, customer))
    )
    ids = _lock_intents(uow, merchant_id, customer)
    counts = _erase(uow, ids)
    if ids or first:
        record = uow.conn.execute(
            update(ce)
            .where(ce.c.id == record.id)
            .values(intents_erased=ce.c.intents_erased + len(ids), updated_at=func.now())
            .returning(ce)
        ).one()
        body = views.customer_erasure_json(record)
        event_writer.emit(uow, [(merchant_id, event_writer.CUSTOMER_ERASED, record.id, body)])
        # What was erased, by field names and counts: never the values.
        audit.record_if(
            uow,
            actor,
            "customer.erase",
            record.id,
            after={"merchant": merchant_id, "fields": list(E.INTENT_FIELDS), **counts},
        )
    return views.customer_erasure_json(record)


def _record(uow: UnitOfWork, merchant_id: str, customer_hash: str):
    """The erasure row of this customer, locked (made if new), and whether it is new.

    The lock serializes two erasures of one customer: the second sees the first's work.
    """
    made = uow.conn.execute(
        pg_insert(ce)
        .values(id=new_id("cer"), merchant_id=merchant_id, customer_hash=customer_hash)
        .on_conflict_do_nothing(index_elements=[ce.c.merchant_id, ce.c.customer_hash])
        .returning(ce.c.id)
    ).first()
    row = uow.conn.execute(
        select(ce)
        .where(ce.c.merchant_id == merchant_id, ce.c.customer_hash == customer_hash)
        .with_for_update()
    ).one()
    return row, made is not None


def _lock_intents(uow: UnitOfWork, merchant_id: str, customer: str) -> list[str]:
    return list(
        uow.conn.execute(
            select(pi.c.id)
            .where(pi.c.merchant_id == merchant_id, pi.c.customer == customer)
            .order_by(pi.c.id)
            .with_for_update()
        ).scalars()
    )


def _erase(uow: UnitOfWork, ids: list[str]) -> dict[str, int]:
    """Tombstone the intents ``ids`` and every copy of them; how many rows of each kind."""
    if not ids:
        return dict.fromkeys(COUNTED, 0)
    conn = uow.conn
    conn.execute(
        update(pi)
        .where(pi.c.id.in_(ids))
        .values(
            customer=E.TOMBSTONE,
            description=case((pi.c.description.is_(None), None), else_=E.TOMBSTONE),
            metadata={},
            client_ip=None,
        )
    )
    refund_ids = list(
        conn.execute(
            update(refunds)
            .where(refunds.c.payment_intent_id.in_(ids))
            .values(metadata={})
            .returning(refunds.c.id)
        ).scalars()
    )
    objects = sorted({*ids, *refund_ids})
    event_ids = _rewrite(
        uow, events.c.data, [events.c.id], events.c.object_id.in_(objects), objects
    )
    since = conn.execute(select(func.min(pi.c.created_at)).where(pi.c.id.in_(ids))).scalar()
    body = idempotency_keys.c.response_body
    responses = _rewrite(
        uow,
        body,
        [idempotency_keys.c.merchant_id, idempotency_keys.c.key],
        and_(
            idempotency_keys.c.created_at >= since,
            or_(body["id"].astext.in_(objects), body["payment_intent"].astext.in_(objects)),
        ),
        objects,
    )
    # Receivers may echo what they were sent: their stored answers go too.
    of_events = select(events.c.id).where(events.c.object_id.in_(objects))
    answers = conn.execute(
        update(webhook_attempts)
        .where(
            webhook_attempts.c.response_body.is_not(None),
            webhook_attempts.c.response_body != E.TOMBSTONE,
            webhook_attempts.c.delivery_id.in_(select(wd.c.id).where(wd.c.event_id.in_(of_events))),
        )
        .values(response_body=E.TOMBSTONE)
    ).rowcount
    return {
        "intents": len(ids),
        "refunds": len(refund_ids),
        "events": len(event_ids),
        "idempotency_responses": len(responses),
        "webhook_answers": answers,
    }


def _rewrite(uow: UnitOfWork, column, keys: list, where, objects: list[str]) -> list[tuple]:
    """Tombstone the stored JSON copies in ``column`` of rows matching ``where``; their keys.

    Read, rewritten by the domain's rule, written back: one rule for every copy.
    """
    table = column.table
    shown = set(objects)
    rows = uow.conn.execute(select(*keys, column).where(where).with_for_update()).all()
    changed = []
    for row in rows:
        new = E.tombstone_response(row[-1], shown)
        if new != row[-1]:
            changed.append((tuple(row[:-1]), new))
    if changed:
        match = [k == bindparam(f"_k{i}") for i, k in enumerate(keys)]
        uow.conn.execute(
            update(table).where(*match).values({column.name: bindparam("_v", type_=column.type)}),
            [{**{f"_k{i}": v for i, v in enumerate(k)}, "_v": new} for k, new in changed],
        )
    return [k for k, _ in changed]
