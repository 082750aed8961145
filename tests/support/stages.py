"""Driving intents through the pipeline's stages in the test's own process."""

from __future__ import annotations


def drive_in_process(engine, vault, ids, hold_ttl_s: int = 3600):
    """Every stage in this process, one transaction each; what apply() asks to enqueue is dropped.

    Authorizes with holds of ``hold_ttl_s``. Returns the authorize stage's
    result: its ``settle_now`` is the settle_instant message a worker would
    have sent after commit.
    """
    from shared.db.uow import UnitOfWork
    from shared.services.stages import authorize, fees, fraud, limits
    from workers.celery_app import app

    steps = [
        limits.run,
        lambda c, i: fraud.run(c, i, test_cards=app.runtime.test_cards, default_threshold=75),
        fees.run,
        lambda c, i: authorize.place_holds(c, i, hold_ttl_s=hold_ttl_s),
    ]
    for step in steps:
        with UnitOfWork(engine) as u:
            step(u, ids)
            u.commit()
    with UnitOfWork(engine) as u:
        answers = authorize.ask_acquirer(authorize.held(u, ids), app.runtime.acquirer, vault)
    with UnitOfWork(engine) as u:  # no dispatcher: the after-commit message is lost
        result = authorize.apply(u, answers, max_attempts=3, hold_ttl_s=hold_ttl_s)
        u.commit()
    return result
