"""The instant lane: instant intents never wait behind other work in the pipeline's queues.

The bench's BENCH_BACKLOG_ECONOMY run found instant intents 16-19 s behind a
5,000-intent economy backlog, because every priority shared the four stage
queues. Now the relay and the re-drive send each instant intent into a lane of
its own (``limits.instant`` ... ``authorize.instant``), and each stage hands its
survivors on within its lane.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from tests import factories as f

pytestmark = pytest.mark.integration

SHARED_STAGE_QUEUES = ("limits", "fraud", "fees", "authorize")


def _stages(engine, ids) -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(pi.c.id, pi.c.status, pi.c.stage).where(pi.c.id.in_(ids)))
        return {r.id: (r.status, r.stage) for r in rows}


@pytest.mark.broker
def test_instant_intents_pass_a_stalled_economy_backlog_in_every_stage(
    worker, make_merchant, submit, engine
):
    """The shared stage queues stop being consumed (a saturated pool); instant still pays."""
    from workers.celery_app import app

    merchant = make_merchant()["merchant_id"]
    for queue in SHARED_STAGE_QUEUES:
        assert app.control.cancel_consumer(queue, reply=True, timeout=5), "no worker answered"
    try:
        economy = [
            submit(merchant, f.card_body(f.new_card(), 500 + i, priority="economy"))
            for i in range(30)
        ]
        standard = submit(merchant, f.card_body(f.new_card(), 700, priority="standard"))
        instant = [
            submit(merchant, f.card_body(f.new_card(), 900 + i, priority="instant"))
            for i in range(5)
        ]
        rows = f.wait_until_final(engine, instant, timeout=30)
        assert {r.status for r in rows.values()} == {"succeeded"}
        # The others have not moved: they wait in the shared queues nobody reads.
        waiting = _stages(engine, [*economy, standard])
        assert set(waiting.values()) == {("processing", "received")}, waiting
    finally:
        for queue in SHARED_STAGE_QUEUES:
            app.control.add_consumer(queue, reply=True, timeout=5)
    done = f.wait_until_final(engine, [*economy, standard], timeout=90)
    assert {r.status for r in done.values()} == {"succeeded"}


def test_the_relay_sends_instant_intents_first_and_into_their_lane(engine, make_merchant, vault):
    """An instant intent behind unsent older ones goes out first, in its lane.

    One transaction creates the intents and claims them, so the layer's own
    relay (which sees only committed rows) cannot take them first; it is
    rolled back at the end.
    """
    from shared.domain.validation import validate_create
    from shared.services import intents
    from workers.relay import _relay_batch

    merchant = make_merchant()["merchant_id"]
    sent: list[tuple[str, list[str]]] = []
    with UnitOfWork(engine, lambda step, ids, countdown=None: sent.append((step, ids))) as u:
        made = []
        for priority in ("economy", "standard", "economy", "instant"):
            body = f.card_body(f.new_card(), 1000, priority=priority)
            req = validate_create(body, date.today())
            row = intents.create(u, vault, merchant, req, client_ip=f.new_ip(), request_id=None)
            made.append(row.id)
        assert _relay_batch(u, 1) == 1 and _relay_batch(u, 1) == 1
    assert sent == [("limits_instant", [made[3]]), ("limits", [made[0]])]


def test_a_re_drive_keeps_instant_intents_in_their_lane(engine, make_merchant, submit):
    from shared.services import maintenance

    merchant = make_merchant()["merchant_id"]
    lost = {
        p: submit(merchant, f.card_body(f.new_card(), 1100, priority=p), enqueue=False)
        for p in ("instant", "economy")
    }
    with engine.begin() as conn:  # as if their messages were lost a minute ago
        conn.execute(
            pi.update()
            .where(pi.c.id.in_(lost.values()))
            .values(stage_changed_at=pi.c.stage_changed_at - timedelta(minutes=1))
        )
    sent: dict[str, list[str]] = {}

    def publish(step, ids, countdown=None):
        for i in ids:
            if i in lost.values():
                sent.setdefault(step, []).append(i)

    with UnitOfWork(engine, publish) as u:
        maintenance.redrive(u, 30)
        u.commit()
    assert sent == {"limits_instant": [lost["instant"]], "limits": [lost["economy"]]}
