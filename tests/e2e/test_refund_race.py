"""Refunds racing the settlement window, over HTTP: the books balance, refunded <= captured.

Succeeded standard intents wait for their window; beat opens one every
second while merchants' refunds keep arriving over the API, so some refunds
land before their intent's settlement (taken from pending: the settlement
pays out the rest) and some after (taken from available), and some while a
window holds the intent (it skips the row; the next window takes it).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from shared.db.tables import ledger_accounts, ledger_transfers
from tests import factories as f
from tests.e2e.conftest import E2E_ENV, Client, create_merchant
from tests.support.units import bound

pytestmark = pytest.mark.e2e

INTENTS = 20


def _book_entries(engine, ids) -> list:
    """(intent, reason, amount, debit account code, credit account code) of the intents."""
    debit, credit = ledger_accounts.alias("d"), ledger_accounts.alias("c")
    with engine.connect() as conn:
        return conn.execute(
            select(
                ledger_transfers.c.intent_id,
                ledger_transfers.c.reason,
                ledger_transfers.c.amount,
                debit.c.code.label("debit"),
                credit.c.code.label("credit"),
            )
            .join(debit, debit.c.id == ledger_transfers.c.debit_account_id)
            .join(credit, credit.c.id == ledger_transfers.c.credit_account_id)
            .where(ledger_transfers.c.intent_id.in_(list(ids)))
        ).all()


@contextlib.contextmanager
def settlement_windows(every_s: float):
    """Run the standard settlement window every ``every_s`` on the e2e stack, as beat would.

    The stack's beat keeps windows a day apart (so payments stay pending until
    a test settles them); this sends the same job to the stack's broker.
    """
    from workers.celery_app import app

    stop = threading.Event()
    options = {**app.conf.broker_transport_options, "global_keyprefix": E2E_ENV["REDIS_KEY_PREFIX"]}

    def run():
        with app.connection(transport_options=options) as conn:
            while not stop.is_set():
                app.send_task("clearhouse.scheduler.settle_standard", connection=conn)
                stop.wait(every_s)  # the window's interval, not a wait for a result

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def test_refunds_racing_settlement_windows_keep_the_books(stack, e2e_engine):
    from shared.services.reconcile import day_discrepancies, discrepancies

    client = Client(stack["url"], create_merchant("refund race"))
    mid = client.merchant["merchant_id"]
    rng = random.Random()
    created = [
        client.post(
            "/v1/payment_intents", f.card_body(f.random_visa(rng), rng.randrange(2000, 9000))
        )
        for _ in range(INTENTS)
    ]
    assert {r.status_code for r in created} == {202}
    intents = {r.json()["id"]: client.wait(r.json()["id"], final=("succeeded",)) for r in created}
    assert {i["settlement_status"] for i in intents.values()} == {"pending"}

    answers: list[tuple[str, int, dict]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def refunder(seed: int) -> None:
        own = random.Random(seed)
        session = Client(stack["url"], client.merchant)
        while not stop.is_set():
            intent_id = own.choice(list(intents))
            # Mostly small refunds; now and then a big one, which may ask for more than is left.
            amount = own.randrange(1000, 6000) if own.random() < 0.1 else own.randrange(1, 120)
            r = session.post("/v1/refunds", {"payment_intent": intent_id, "amount": amount})
            if r.status_code == 429:  # three threads flat out pass 100/s: refused, nothing made
                stop.wait(float(r.headers.get("Retry-After") or 1))
                continue
            with lock:
                answers.append((intent_id, r.status_code, r.json()))

    def all_settled() -> bool:
        return all(
            client.get(f"/v1/payment_intents/{i}").json()["settlement_status"] == "settled"
            for i in intents
        )

    threads = [threading.Thread(target=refunder, args=(n,)) for n in range(3)]
    with settlement_windows(every_s=1.0):
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while not all_settled():
                assert time.monotonic() < deadline, "the windows did not settle every intent"
                time.sleep(0.2)
            settled_at = len(answers)
            # And refunds of settled intents, still racing the windows that follow.
            while len(answers) < settled_at + 40:
                assert time.monotonic() < deadline, "refunds stopped coming back"
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(30)

    codes = Counter((status, body.get("code")) for _, status, body in answers if status != 200)
    assert set(codes) <= {(400, "amount_too_large"), (400, "charge_already_refunded")}, codes
    refunds = defaultdict(list)
    for intent_id, status, body in answers:
        if status == 200:
            refunds[intent_id].append(body)
    assert sum(map(len, refunds.values())) > INTENTS  # most went through

    expected_total = 0
    for intent_id in intents:
        now = client.get(f"/v1/payment_intents/{intent_id}").json()
        mine = refunds[intent_id]
        assert now["amount_refunded"] == sum(r["amount"] for r in mine) <= now["amount_received"]
        listed = client.get(f"/v1/refunds?payment_intent={intent_id}&limit=100").json()["data"]
        assert sorted(r["id"] for r in listed) == sorted(r["id"] for r in mine)
        fee_back = sum(r["fee_refunded"] for r in mine)
        assert fee_back <= now["fee"]
        expected_total += now["net"] - now["amount_refunded"] + fee_back

    # Everything settled: nothing left in pending, available holds exactly what is left.
    balance = client.get("/v1/balance").json()
    assert [(p["currency"], p["amount"], p["held"]) for p in balance["pending"]] == [("USD", 0, 0)]
    assert [(a["currency"], a["amount"]) for a in balance["available"]] == [("USD", expected_total)]

    # Each settlement paid the net less what refunds had already taken from pending
    # (their amount, less the fee they gave back to pending), and only once.
    pending = f"merchant:{mid}:pending:USD"
    available = f"merchant:{mid}:available:USD"
    taken_from_pending: dict[str, int] = defaultdict(int)
    refund_sides = Counter()
    settlements = defaultdict(list)
    for e in _book_entries(e2e_engine, intents):
        if e.reason == "refund":
            refund_sides[e.debit] += 1
            if e.debit == pending:
                taken_from_pending[e.intent_id] += e.amount
        elif e.reason == "fee_refund" and e.credit == pending:
            taken_from_pending[e.intent_id] -= e.amount
        elif e.reason == "settlement":
            assert (e.debit, e.credit) == (pending, available)
            settlements[e.intent_id].append(e.amount)
    # The race happened both ways: refunds before and after their intent's settlement.
    assert refund_sides[pending] > 0 and refund_sides[available] > 0, refund_sides
    for intent_id, intent in intents.items():
        rest = intent["net"] - taken_from_pending[intent_id]
        assert settlements[intent_id] == ([rest] if rest > 0 else []), intent_id

    with e2e_engine.connect() as conn:
        assert discrepancies(bound(conn)) == []
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        assert day_discrepancies(bound(conn), today, today + timedelta(days=1)) == []
