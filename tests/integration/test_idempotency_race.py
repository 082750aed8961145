"""One Idempotency-Key, many concurrent requests: the effect runs once, whatever the timing.

The race this guards is narrow (a request's snapshot taken just before the
first request commits, its lock just after), so it is hunted with many
bursts of concurrent requests on real connections rather than staged.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter

import pytest

from shared.services.errors import ServiceError

pytestmark = pytest.mark.integration

BURSTS = 500
REQUESTS = 8


def test_concurrent_requests_with_one_key_run_the_effect_once(engine, make_merchant):
    from shared.db.uow import UnitOfWork
    from shared.services import idempotency

    merchant = make_merchant()["merchant_id"]
    ran: Counter = Counter()
    request = ("POST", "/v1/payment_intents", "hash")

    def one(key: str, start: threading.Barrier) -> None:
        start.wait()
        try:
            with UnitOfWork(engine) as u:
                if idempotency.begin(u, merchant, key, *request, retention_h=24) is None:
                    ran[key] += 1  # the effect: what must happen once per key
                    idempotency.complete(u, merchant, key, request, 202, {"ok": True})
                u.commit()
        except ServiceError:
            pass  # 409: still in flight; a client would retry

    for _ in range(BURSTS):
        key = secrets.token_hex(8)
        start = threading.Barrier(REQUESTS)
        threads = [threading.Thread(target=one, args=(key, start)) for _ in range(REQUESTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    twice = {k: n for k, n in ran.items() if n > 1}
    assert twice == {}, f"{len(twice)} of {BURSTS} keys ran their effect more than once"
