"""Running one pipeline stage over a batch of intents, one unit of work per try.

A transient error (Postgres or the network away) propagates: the caller
retries the whole batch. Any other error re-runs each intent on its own, so
the healthy ones go on, and an intent that still fails alone is failed with
``processing_error`` rather than blocking its batch or being re-driven forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.db.faults import is_transient
from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork, transact
from shared.domain.intent import FailureCode, Status
from shared.services import outcomes
from shared.services.stages.common import StageResult

log = logging.getLogger(__name__)

Step = Callable[[UnitOfWork, list[str]], StageResult]
NewUnit = Callable[[], UnitOfWork]


def run_isolated(new_uow: NewUnit, step: Step, ids: list[str], then: str | None = None):
    """Run ``step(uow, ids)``, committed; ``then``: the step its advanced intents go to."""
    name = getattr(step, "__name__", "stage")
    try:
        return transact(new_uow, _step_then, step, ids, then)
    except Exception as exc:
        if is_transient(exc):
            raise
        if len(ids) == 1:
            log.exception("intent %s failed in %s; failing it", ids[0], name)
            transact(new_uow, _fail_broken, ids[0])
            return StageResult(failed=list(ids))
        log.warning("batch of %d failed in %s; isolating", len(ids), name, exc_info=True)
    merged = StageResult()
    for intent_id in ids:
        merged.absorb(run_isolated(new_uow, step, [intent_id], then))
    return merged


def _step_then(uow: UnitOfWork, step: Step, ids: list[str], then: str | None) -> StageResult:
    result = step(uow, ids)
    if then is not None:
        uow.enqueue(then, result.advanced)
    return result


def _fail_broken(uow: UnitOfWork, intent_id: str) -> None:
    row = uow.conn.execute(
        pi.select().where(pi.c.id == intent_id, pi.c.status == Status.PROCESSING).with_for_update()
    ).first()
    if row is not None:
        outcomes.fail(uow, [row], FailureCode.PROCESSING_ERROR)
