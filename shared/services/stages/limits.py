"""Stage 1: reserve the amount against merchant and payer limits, atomically."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db.tables import limit_counters, merchant_limits
from shared.db.uow import UnitOfWork
from shared.domain.intent import FailureCode, Stage
from shared.domain.limits import LimitRequest, Limits, allocate, counter_keys, default_limits
from shared.money import currency
from shared.services import outcomes
from shared.services.stages.common import StageResult, advance, claim, now


def run(uow: UnitOfWork, ids) -> StageResult:
    """Reserve each claimed intent's amount against its limits; fail those over them."""
    rows = claim(uow, ids, Stage.RECEIVED)
    result = StageResult()
    if not rows:
        return result
    today = now(uow).date()
    configured = _configured_limits(uow, rows)
    requests = [
        LimitRequest(
            intent_id=r.id,
            amount=r.amount,
            merchant=_limits(configured, r, "merchant"),
            payer=_limits(configured, r, "payer"),
            keys=counter_keys(r.merchant_id, r.payer_key, r.currency, today),
        )
        for r in rows
    ]
    used = _lock_counters(uow, sorted({k for req in requests for k in req.keys}))
    decisions = allocate(requests, used)
    by_id = {r.id: r for r in rows}
    accepted = [d.intent_id for d in decisions if d.accepted]
    refused = [d for d in decisions if not d.accepted]
    deltas: dict[str, int] = {}
    for req in requests:
        if req.intent_id in accepted:
            for key in req.keys:
                deltas[key] = deltas.get(key, 0) + req.amount
    _add_to_counters(uow, deltas)
    advance(uow, accepted, Stage.LIMITS_CHECKED, limit_day=today)
    if accepted:
        uow.conn.execute(
            text("UPDATE payment_intents SET limit_reserved = amount WHERE id = ANY(:ids)"),
            {"ids": accepted},
        )
    for d in refused:
        outcomes.fail(
            uow,
            [by_id[d.intent_id]],
            FailureCode.LIMIT_EXCEEDED,
            f"The payment exceeds the {d.reason} limit.",
        )
    result.advanced = accepted
    result.failed = [d.intent_id for d in refused]
    return result


def _limits(configured, row, scope: str) -> Limits:
    """The merchant's limits for this scope; fields left unset take the default."""
    default = default_limits(scope, currency(row.currency).unit)
    own = configured.get((row.merchant_id, row.currency, scope))
    if own is None:
        return default
    return Limits(
        *(
            getattr(default, f) if getattr(own, f) is None else getattr(own, f)
            for f in ("per_transaction", "daily", "monthly")
        )
    )


def _configured_limits(uow: UnitOfWork, rows) -> dict[tuple[str, str, str], Limits]:
    merchants = sorted({r.merchant_id for r in rows})
    found = uow.conn.execute(
        select(merchant_limits).where(merchant_limits.c.merchant_id.in_(merchants))
    )
    return {
        (m.merchant_id, m.currency, m.scope): Limits(m.per_transaction, m.daily, m.monthly)
        for m in found
    }


def _lock_counters(uow: UnitOfWork, keys: list[str]) -> dict[str, int]:
    # Create missing rows, then lock all of them in key order: every batch
    # takes its counters in the same order, so batches queue, never deadlock.
    uow.conn.execute(
        pg_insert(limit_counters)
        .values([{"key": k, "used": 0} for k in keys])
        .on_conflict_do_nothing(index_elements=["key"])
    )
    rows = uow.conn.execute(
        select(limit_counters.c.key, limit_counters.c.used)
        .where(limit_counters.c.key.in_(keys))
        .order_by(limit_counters.c.key)
        .with_for_update()
    )
    return {k: used for k, used in rows}


def _add_to_counters(uow: UnitOfWork, deltas: dict[str, int]) -> None:
    if not deltas:
        return
    params = {}
    values = []
    for i, (key, delta) in enumerate(sorted(deltas.items())):
        params[f"k{i}"], params[f"d{i}"] = key, delta
        values.append(f"(:k{i}, CAST(:d{i} AS numeric))")
    uow.conn.execute(
        text(
            "UPDATE limit_counters AS c SET used = c.used + v.delta"
            f" FROM (VALUES {', '.join(values)}) AS v(key, delta) WHERE c.key = v.key"
        ),
        params,
    )
