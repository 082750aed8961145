"""The offline queue against a local server: durable before submit returns, first in first out,
kept on failures, answered items scrubbed. The real API (stopped, restarted, a drainer
SIGKILLed mid-drain) is the repository's tests/e2e/test_sdk_stack.py."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time

import pytest

from clearhouse_client.offline import _drain_lock
from conftest import Answer, closed_port, intent, problem

INTENTS = "/v1/payment_intents"
NUMBER = "4000056655665556"


def params(amount: int = 1000, **extra) -> dict:
    card = {"number": NUMBER, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    return {
        "amount": amount,
        "currency": "USD",
        "payment_method": {"type": "card", "card": card},
        **extra,
    }


def raw_rows(path) -> list[sqlite3.Row]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM offline_items ORDER BY local_id").fetchall()


def wait_for(predicate, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)  # polling interval
    return value


def test_submit_writes_a_private_wal_file_before_returning(make_client, api, tmp_path):
    path = tmp_path / "q" / "offline.sqlite3"
    local_id = make_client(offline_path=path).offline.submit(params(priority="instant"))

    (row,) = raw_rows(path)  # another connection sees it: committed
    assert row["local_id"] == local_id and row["state"] == "queued"
    assert len(row["idempotency_key"]) == 36 and NUMBER in row["params"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert api.seen == []  # nothing sent by submit


def test_drain_sends_in_order_with_each_items_key_and_scrubs_the_answered(
    make_client, api, tmp_path
):
    client = make_client()
    ids = [client.offline.submit(params(1000 + n, idempotency_key=f"k-{n}")) for n in range(3)]
    api.then(INTENTS, *(Answer(202, intent(f"pi_{n}")) for n in range(3)))

    result = client.offline.drain()

    assert [i.local_id for i in result.acknowledged] == ids and result.remaining == 0
    sent = api.requests(INTENTS)
    assert [s.headers["idempotency-key"] for s in sent] == ["k-0", "k-1", "k-2"]
    assert [s.body["amount"] for s in sent] == [1000, 1001, 1002]
    items = client.offline.items()
    assert [(i.state, i.intent_id, i.attempts) for i in items] == [
        ("acknowledged", f"pi_{n}", 1) for n in range(3)
    ]
    assert items[0].summary["payment_method"] == {"type": "card", "last4": "5556"}
    assert NUMBER not in repr(items)
    assert all(r["params"] is None for r in raw_rows(tmp_path / "offline.sqlite3"))
    assert client.offline.drain().acknowledged == []  # nothing is sent twice


def test_a_failure_keeps_the_item_and_stops_so_that_order_holds(make_client, api):
    client = make_client()
    first, second, third = (client.offline.submit(params(n)) for n in (1, 2, 3))
    api.then(INTENTS, Answer(202, intent("pi_a")), problem(503, "service_unavailable"))

    result = client.offline.drain()

    assert [i.local_id for i in result.acknowledged] == [first]
    assert result.error.http_status == 503 and result.remaining == 2
    states = {i.local_id: (i.state, i.attempts) for i in client.offline.items()}
    assert states == {first: ("acknowledged", 1), second: ("queued", 1), third: ("queued", 0)}
    assert len(api.requests(INTENTS)) == 2  # the third was not tried out of turn

    api.then(INTENTS, Answer(202, intent("pi_b")), Answer(202, intent("pi_c")))
    again = client.offline.drain()
    assert [i.local_id for i in again.acknowledged] == [second, third]
    keys = [s.headers["idempotency-key"] for s in api.requests(INTENTS)]
    assert keys[1] == keys[2]  # the retried item kept its key


@pytest.mark.parametrize(
    "answer",
    [
        problem(429, "rate_limited", **{"Retry-After": "1"}),
        problem(409, "idempotency_key_in_use"),
        problem(500, "internal_error"),
        problem(401, "invalid_client"),
        problem(403, "merchant_suspended"),
    ],
)
def test_not_an_answer_about_the_item_keeps_it_queued(make_client, api, answer):
    client = make_client()
    client.offline.submit(params())
    path = "/v1/oauth/token" if answer.status in (401, 403) else INTENTS
    api.defaults[path] = answer
    result = client.offline.drain()
    (item,) = client.offline.items()
    assert item.state == "queued" and result.remaining == 1
    assert result.error.code == answer.body["code"] and answer.body["code"] in item.last_error


def test_a_definitive_refusal_is_recorded_as_rejected_and_the_drain_goes_on(make_client, api):
    client = make_client()
    bad = client.offline.submit(params(currency="XXX"))
    good = client.offline.submit(params())
    api.then(INTENTS, problem(400, "parameter_invalid", "bad currency", param="currency"))
    api.then(INTENTS, Answer(202, intent("pi_ok")))

    result = client.offline.drain()

    assert [i.local_id for i in result.rejected] == [bad]
    assert [i.local_id for i in result.acknowledged] == [good]
    rejected, acknowledged = client.offline.items()
    assert rejected.state == "rejected" and rejected.problem["param"] == "currency"
    assert rejected.problem["code"] == "parameter_invalid" and rejected.params is None
    assert acknowledged.intent_id == "pi_ok"


def test_with_no_server_everything_stays_queued(make_client):
    client = make_client(f"http://127.0.0.1:{closed_port()}")
    client.offline.submit(params())
    client.offline.submit(params())
    result = client.offline.drain()
    assert result.remaining == 2 and result.acknowledged == [] and result.error is not None
    assert [i.state for i in client.offline.items()] == ["queued", "queued"]
    assert "no answer" in client.offline.items()[0].last_error


def test_an_item_left_sending_by_a_crash_is_resent_with_its_key(make_client, api):
    client = make_client()
    local_id = client.offline.submit(params(idempotency_key="order-77"))
    client.offline.store.mark_sending(local_id)  # as a drainer killed mid-send leaves it
    assert client.offline.items()[0].state == "sending"
    api.then(INTENTS, Answer(202, intent("pi_77"), {"Idempotent-Replayed": "true"}))

    result = client.offline.drain()

    assert [i.local_id for i in result.acknowledged] == [local_id]
    (sent,) = api.requests(INTENTS)
    assert sent.headers["idempotency-key"] == "order-77"
    assert client.offline.items()[0].attempts == 2


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"amount": 5, "currency": "USD"}, "missing"),
        ({**params(), "colour": "red"}, "unknown"),
        ({**params(), "amount": "10"}, "amount"),
        ({**params(), "amount": True}, "amount"),
        ({**params(), "amount": 0}, "amount"),
        ({**params(), "idempotency_key": " padded "}, "idempotency_key"),
        ({**params(), "idempotency_key": "x" * 256}, "idempotency_key"),
        ({**params(), "metadata": {"a": object()}}, "JSON"),
        ([1, 2], "dict"),
    ],
)
def test_bad_params_are_refused_and_nothing_is_written(make_client, tmp_path, bad, words):
    client = make_client()
    client.offline.submit(params(idempotency_key="first"))
    with pytest.raises(ValueError, match=words):
        client.offline.submit(bad)
    assert len(client.offline.items()) == 1


def test_a_key_queued_again_is_the_same_item_or_refused_for_another_payment(make_client, api):
    client = make_client()
    first = client.offline.submit(params(idempotency_key="dup"))
    assert client.offline.submit(params(idempotency_key="dup")) == first
    with pytest.raises(ValueError, match="another payment"):
        client.offline.submit(params(2000, idempotency_key="dup"))
    api.then(INTENTS, Answer(202, intent("pi_dup")))
    client.offline.drain()
    # Answered (its body scrubbed), the same payment is still recognised by its summary.
    assert client.offline.submit(params(idempotency_key="dup")) == first
    with pytest.raises(ValueError, match="another payment"):
        client.offline.submit(params(2000, idempotency_key="dup"))
    assert len(client.offline.items()) == 1 and len(api.requests(INTENTS)) == 1


def test_items_are_per_client_in_one_file(make_client, api, tmp_path):
    from clearhouse_client import Client

    mine = make_client()
    mine.offline.submit(params())
    other = Client("ci_other", "cs", api.url, offline_path=tmp_path / "offline.sqlite3")
    assert other.offline.items() == [] and other.offline.drain().acknowledged == []
    assert len(mine.offline.items()) == 1


def test_purge_deletes_only_answered_items(make_client, api):
    client = make_client()
    client.offline.submit(params())
    api.then(INTENTS, Answer(202, intent("pi_1")), problem(503, "service_unavailable"))
    client.offline.drain()
    client.offline.submit(params())
    client.offline.drain()
    assert client.offline.purge() == 1
    assert [i.state for i in client.offline.items()] == ["queued"]


def test_the_background_drainer_sends_soon_after_a_submit_and_stops(make_client, api):
    client = make_client()
    api.defaults[INTENTS] = Answer(202, intent("pi_bg"))
    drainer = client.offline.start(interval=60)  # a submit wakes it; the interval is a fallback
    local_id = client.offline.submit(params())
    wait_for(lambda: client.offline.items()[0].state == "acknowledged")
    client.close()
    assert not drainer.is_alive()
    assert client.offline.items()[0].local_id == local_id


def test_one_drain_at_a_time_per_file(make_client, api):
    client = make_client()
    client.offline.submit(params())
    held, release = threading.Event(), threading.Event()

    def hold():
        with _drain_lock(client.offline.path, 1):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        result = client.offline.drain(lock_timeout=0.1)
    finally:
        release.set()
        holder.join()
    assert result.busy and result.remaining == 1 and api.requests(INTENTS) == []
