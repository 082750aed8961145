"""The scheduler for real: RedBeat's single-beat lock, hold expiry, re-drive."""

from __future__ import annotations

import math
import random
import re

import pytest

from tests import factories as f
from tests.conftest import wipe_redis
from tests.support import processes
from tests.support.stages import drive_in_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

FAST_BEAT = {
    "BEAT_LOCK_TIMEOUT_S": "3",
    "REDRIVE_INTERVAL_S": "1",
    "REDRIVE_AFTER_S": "2",
    "HOLD_EXPIRY_INTERVAL_S": "1",
}


def _sent(beat, entry: str = "") -> int:
    """Tasks ``beat`` has sent (of schedule ``entry``, or all)."""
    return len(re.findall(rf"Sending due task {re.escape(entry)}", beat.output()))


def test_only_one_beat_is_active_and_a_standby_takes_over(redis_client, database):
    lock_timeout = float(FAST_BEAT["BEAT_LOCK_TIMEOUT_S"])
    redrive_every = float(FAST_BEAT["REDRIVE_INTERVAL_S"])
    first = processes.celery_beat(FAST_BEAT)
    second = processes.celery_beat(FAST_BEAT, wait_for_lock=False)
    try:
        # The standby is up and waiting for the lock. What shows that longer than
        # the lock's lifetime has passed meanwhile is the holder itself: its
        # re-drive is sent once per interval, so n more sends span (n-1) intervals,
        # here the lock timeout and a second more. Had the holder not kept
        # extending its lock, the standby would have taken it by then.
        n = math.ceil((lock_timeout + 1) / redrive_every) + 1
        start = _sent(first, "redrive-stuck-intents")
        wait_until(
            lambda: _sent(first, "redrive-stuck-intents") >= start + n,
            timeout=10 * n * redrive_every,
            what=f"the active beat to send its re-drive {n} more times",
        )
        assert "Acquired lock" not in second.output()
        assert _sent(second) == 0
        first.kill()  # no clean shutdown: the lock must expire on its own
        second.wait_for("beat: Acquired lock", timeout=15)
        before = _sent(second)
        wait_until(lambda: _sent(second) > before, 15, "the new holder to send tasks")
    finally:
        first.stop()
        second.stop()


def test_expired_holds_are_voided_by_the_real_scheduler(
    worker, make_merchant, submit, engine, vault, books_balance
):
    """A 2-second hold: beat's expiry job cancels the intent and frees money and limits."""
    merchant = make_merchant()["merchant_id"]
    card = f.card_body(f.random_visa(random.Random()), 700, capture_method="manual")
    intent_id = submit(merchant, card, enqueue=False)
    # Drive it through the stages in-process, authorizing with a 2 s hold timeout.
    drive_in_process(engine, vault, [intent_id], hold_ttl_s=2)
    assert f.wait_until_final(engine, [intent_id])[intent_id].status == "requires_capture"
    with processes.celery_beat(FAST_BEAT):
        row = f.wait_until_final(engine, [intent_id], timeout=20, final={"canceled"})[intent_id]
    assert row.cancellation_reason == "expired" and row.limit_reserved == 0
    books_balance()


def test_flushing_redis_mid_run_still_finishes_every_intent(
    worker, make_merchant, submit, engine, redis_client, books_balance
):
    """Redis loses every key while intents are in flight; beat's re-drive recovers them."""
    merchant = make_merchant()["merchant_id"]
    rng = random.Random()
    with processes.celery_beat(FAST_BEAT) as beat:
        ids = [submit(merchant, f.card_body(f.random_visa(rng), 500)) for _ in range(40)]
        # and some whose message is certainly gone (published, then lost)
        ids += [
            submit(merchant, f.card_body(f.random_visa(rng), 500), enqueue=False) for _ in range(10)
        ]
        # queued messages, unacked messages, beat's lock and schedule: all gone
        assert wipe_redis(redis_client) > 0
        more = [submit(merchant, f.card_body(f.random_visa(rng), 500)) for _ in range(10)]
        rows = f.wait_until_final(engine, ids + more, timeout=45)
        # beat noticed and took its lock and schedule back (else nothing re-drives)
        beat.wait_for("lost the scheduler lock", timeout=10)
    assert {r.status for r in rows.values()} == {"succeeded"}
    books_balance()
