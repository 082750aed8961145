"""What every pipeline stage shares: claiming a batch by compare-and-set."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select, text

from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain.intent import Stage, Status


@dataclass
class StageResult:
    """Per-intent outcome of one batch: who moves on, who waits for a retry."""

    advanced: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    # Intents that reached a final status and settle at once (instant priority).
    settle_now: list[str] = field(default_factory=list)

    def absorb(self, other: StageResult, *, advanced: bool = True) -> None:
        """Add ``other``'s outcomes to these (``advanced=False``: all but who moved on)."""
        for name in ("advanced", "failed", "retry", "settle_now")[0 if advanced else 1 :]:
            getattr(self, name).extend(getattr(other, name))


def claim(uow: UnitOfWork, ids, stage: Stage):
    """Lock the intents still at ``stage``; a duplicate delivery gets none.

    Rows are locked in id order, so two batches sharing intents cannot
    deadlock; a concurrent duplicate waits here, then sees the stage moved on
    (READ COMMITTED re-checks the WHERE on the new row version) and skips.
    """
    return uow.conn.execute(
        select(pi)
        .where(pi.c.id.in_(list(ids)), pi.c.status == Status.PROCESSING, pi.c.stage == stage)
        .order_by(pi.c.id)
        .with_for_update()
    ).all()


def advance(uow: UnitOfWork, ids, to: Stage, per_row: dict[str, dict] | None = None, **values):
    """Move claimed intents to stage ``to``; ``per_row`` sets columns per intent."""
    if not ids:
        return
    common = {"stage": to.value, **values}
    if not per_row:
        uow.conn.execute(
            pi.update()
            .where(pi.c.id.in_(list(ids)))
            .values(**common, updated_at=func.now(), stage_changed_at=func.now())
        )
        return
    # One executemany: with executemany_mode="values_plus_batch" (engine.py)
    # psycopg2 sends it in pages, not one round trip per row.
    columns = sorted(next(iter(per_row.values())))
    uow.conn.execute(
        pi.update()
        .where(pi.c.id == bindparam("_id"))
        .values(
            **common,
            **{c: bindparam(c) for c in columns},
            updated_at=func.now(),
            stage_changed_at=func.now(),
        ),
        [{"_id": i, **per_row[i]} for i in ids],
    )


def now(uow: UnitOfWork):
    """The database's clock (one clock for every process)."""
    return uow.conn.execute(text("SELECT now()")).scalar_one()
