"""Bank payments by two-phase commit, against real bank processes and real workers.

A private stack per module (its own database and Redis, the outbox relay); each test
starts its own pair of sandbox banks (``clearhouse-bank`` processes) and the workers
it breaks. Across every test, the money at both banks plus what the ledger's bank
clearing account posted for the test's intents (debits - credits) never changes:
the platform's fee is what stays in clearing, and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import date

import pytest
from sqlalchemy import select

from shared.db.tables import bank_transactions as btx
from shared.db.tables import ledger_accounts, ledger_transfers
from shared.db.tables import payment_intents as pi
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from tests import factories as f
from tests.integration.test_claims_faults import FAST_BEAT, _books, _merchant, private_stack
from tests.support import processes
from tests.support.banks import BankPair
from tests.support.waiting import until

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

PIPELINE = "limits,fraud,fees,authorize,maintenance"
# The gateway's deadlines in these tests: a bank call gives up after 1 s, a
# transaction without a decision is presumed aborted after 3 s.
FAST_GATEWAY = {"BANK_RPC_TIMEOUT_S": "1", "BANK_DECISION_TIMEOUT_S": "3"}
FAST_RESOLVER = {**FAST_BEAT, "BANK_RESOLVE_INTERVAL_S": "0.5"}


@pytest.fixture(scope="module")
def stack():
    with private_stack("banks") as s:
        s.procs.enter_context(processes.relay(s.env))
        yield s


@pytest.fixture
def banks(tmp_path, stack):
    pair = BankPair(tmp_path)
    yield pair
    pair.stop_all()


@pytest.fixture
def procs(stack):
    """The test's own processes (workers, beat), stopped at its end."""
    with contextlib.ExitStack() as started:
        yield started


class Payment:
    """A payer at bank_a, a merchant paid at bank_b, and the books' invariant."""

    def __init__(self, stack, banks: BankPair, vault, payer_funds: int = 10_000):
        self.stack, self.banks, self.vault = stack, banks, vault
        self.payer = banks.open_account("bank_a", "payer", payer_funds)
        self.merchant_account = banks.open_account("bank_b", "merchant")
        self.merchant = _merchant(stack.engine, vault)["merchant_id"]
        from shared.services import merchants

        with UnitOfWork(stack.engine) as u:
            merchants.set_bank_account(u, self.merchant, "bank_b", self.merchant_account)
            u.commit()
        self.before = banks.total()
        self.ids: list[str] = []

    def create(self, amount: int = 1_000) -> str:
        from shared.domain.validation import validate_create
        from shared.services import intents

        body = {
            "amount": amount,
            "currency": "USD",
            "payment_method": {"type": "bank_account", "bank": "bank_a", "account": self.payer},
        }
        with UnitOfWork(self.stack.engine) as u:
            row = intents.create(
                u,
                self.vault,
                self.merchant,
                validate_create(body, date.today()),
                client_ip=f.new_ip(),
                request_id=None,
            )
            u.commit()
        self.ids.append(row.id)
        return row.id

    def intent(self, intent_id: str):
        with self.stack.engine.connect() as conn:
            return conn.execute(select(pi).where(pi.c.id == intent_id)).one()

    def tx(self, intent_id: str):
        with self.stack.engine.connect() as conn:
            return conn.execute(select(btx).where(btx.c.intent_id == intent_id)).first()

    def final(self, intent_id: str, timeout: float = 60):
        try:
            return f.wait_until_final(self.stack.engine, [intent_id], timeout=timeout)[intent_id]
        except AssertionError as exc:
            watched = [*WATCHED, *self.banks.procs.values()]
            logs = "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in watched)
            raise AssertionError(f"{exc}\n{logs}") from None

    def clearing_posted(self) -> int:
        """Debits - credits of bank clearing posted for this test's intents."""
        code = L.account_code("bank_clearing", "USD")
        with self.stack.engine.connect() as conn:
            account = conn.execute(
                select(ledger_accounts.c.id).where(ledger_accounts.c.code == code)
            ).scalar()
            rows = conn.execute(
                select(ledger_transfers).where(
                    ledger_transfers.c.intent_id.in_(self.ids),
                    ledger_transfers.c.kind.in_((L.POSTED, L.POST_PENDING)),
                )
            ).all()
        return sum(t.amount for t in rows if t.debit_account_id == account) - sum(
            t.amount for t in rows if t.credit_account_id == account
        )

    def assert_conserved(self) -> None:
        assert self.banks.total() + self.clearing_posted() == self.before
        assert _books(self.stack.engine) == []

    def moved(self) -> tuple[int, int]:
        """(payer's balance, merchant's balance) at their banks."""
        return (
            self.banks.account("bank_a", self.payer)["balance"],
            self.banks.account("bank_b", self.merchant_account)["balance"],
        )


# The test's workers, whose logs a timeout shows.
WATCHED: list = []


def _worker(stack, banks, name: str, **env):
    w = processes.celery_worker(
        name,
        queues=PIPELINE,
        pool="solo",
        concurrency=1,
        env={**stack.env, **banks.env, **FAST_GATEWAY, **env},
    )
    WATCHED.append(w)
    return w


def _paying(stack, banks, procs, vault, name: str) -> tuple[Payment, str]:
    """Both banks up, a worker, and one payment of 1,000 sent through the pipeline."""
    banks.start("bank_a")
    banks.start("bank_b")
    pay = Payment(stack, banks, vault)
    procs.enter_context(_worker(stack, banks, name))
    return pay, pay.create(1_000)


def _timeline(row) -> str:
    from shared.services.bank_payments import timeline

    return "\n".join(f"  {at}  {what}" for at, what in timeline(row))


def test_a_bank_payment_commits_at_both_banks_and_is_settled(stack, banks, procs, vault):
    pay, intent_id = _paying(stack, banks, procs, vault, "bank-ok")
    row = pay.final(intent_id)
    assert (row.status, row.amount_received, row.settlement_status) == (
        "succeeded",
        1_000,
        "settled",
    )
    assert row.fee_amount > 0
    # The payer paid the amount; the merchant's bank got it less the fee.
    assert pay.moved() == (10_000 - 1_000, 1_000 - row.fee_amount)
    tx = until(lambda: (t := pay.tx(intent_id)).completed_at and t, what="both acknowledgements")
    assert tx.decision == "commit"
    assert {r: a["state"] for r, a in tx.acks.items()} == {
        "payer": "committed",
        "merchant": "committed",
    }
    assert banks.state("bank_a", tx.id) == banks.state("bank_b", tx.id) == "committed"
    assert pay.clearing_posted() == row.fee_amount
    pay.assert_conserved()
    print(f"2PC timeline of {intent_id} ({tx.id}):\n{_timeline(tx)}")


def test_insufficient_funds_aborts_at_both_banks_and_moves_nothing(stack, banks, procs, vault):
    banks.start("bank_a")
    banks.start("bank_b")
    pay = Payment(stack, banks, vault, payer_funds=500)
    procs.enter_context(_worker(stack, banks, "bank-broke"))
    intent_id = pay.create(1_000)
    row = pay.final(intent_id)
    assert (row.status, row.failure_code) == ("failed", "insufficient_funds")
    tx = until(lambda: (t := pay.tx(intent_id)).completed_at and t, what="the aborts")
    assert (tx.decision, tx.reason) == ("abort", "insufficient_funds")
    assert banks.state("bank_a", tx.id) == banks.state("bank_b", tx.id) == "aborted"
    assert pay.moved() == (500, 0)
    assert banks.account("bank_a", pay.payer)["reserved"] == 0
    pay.assert_conserved()


def test_a_bank_down_at_prepare_aborts_and_nothing_moves_at_either_bank(stack, banks, procs, vault):
    banks.start("bank_a")
    banks.start("bank_b")
    pay = Payment(stack, banks, vault)
    banks.stop("bank_b")  # the merchant's bank is down
    procs.enter_context(_worker(stack, banks, "bank-down-prepare"))
    intent_id = pay.create(1_000)
    row = pay.final(intent_id)
    assert (row.status, row.failure_code) == ("failed", "bank_unavailable")
    tx = pay.tx(intent_id)
    assert (tx.decision, tx.reason) == ("abort", "bank_unavailable")
    assert tx.votes["merchant"]["vote"] == "unavailable"
    # The payer's bank prepared, and was told to abort: its reservation is gone.
    assert banks.state("bank_a", tx.id) == "aborted"
    payer = banks.account("bank_a", pay.payer)
    assert (payer["balance"], payer["reserved"]) == (10_000, 0)
    # bank_b comes back; the resolver's abort reaches it too (a tombstone: a late
    # Prepare would be refused), and nothing moved there either.
    banks.start("bank_b")
    procs.enter_context(processes.celery_beat({**stack.env, **banks.env, **FAST_RESOLVER}))
    until(lambda: pay.tx(intent_id).completed_at, what="bank_b's acknowledgement of the abort")
    assert banks.state("bank_b", tx.id) == "aborted"
    assert pay.moved() == (10_000, 0)
    pay.assert_conserved()


def test_a_bank_down_at_commit_gets_the_commit_again_until_it_lands(stack, banks, procs, vault):
    banks.start("bank_a")
    # bank_b votes, then fails every Commit (as if it went down right after voting).
    banks.start("bank_b", BANK_FAIL_METHODS="Commit", BANK_FAILURE_RATE="1")
    pay = Payment(stack, banks, vault)
    procs.enter_context(_worker(stack, banks, "bank-down-commit"))
    procs.enter_context(processes.celery_beat({**stack.env, **banks.env, **FAST_RESOLVER}))
    intent_id = pay.create(1_000)
    # The decision is commit: the payment succeeded, whatever bank_b answers now.
    row = pay.final(intent_id)
    assert row.status == "succeeded"
    tx = until(lambda: (t := pay.tx(intent_id)).attempts >= 3 and t, what="several re-sends")
    assert tx.decision == "commit" and tx.completed_at is None
    assert set(tx.acks) == {"payer"}
    assert banks.state("bank_b", tx.id) == "prepared"
    banks.restart("bank_b")  # back without the fault, its books as they were
    tx = until(lambda: (t := pay.tx(intent_id)).completed_at and t, what="the commit at bank_b")
    assert banks.state("bank_b", tx.id) == "committed"
    assert pay.moved() == (9_000, 1_000 - row.fee_amount)
    pay.assert_conserved()


def test_a_worker_killed_between_prepare_and_decision_is_presumed_aborted(
    stack, banks, procs, vault
):
    banks.start("bank_a")
    # bank_b's Prepare takes 4 s: the worker is killed while it waits for that vote.
    banks.start("bank_b", BANK_LATENCY_MS="4000", BANK_FAIL_METHODS="Prepare")
    pay = Payment(stack, banks, vault)
    slow = _worker(stack, banks, "bank-kill-prepare", BANK_RPC_TIMEOUT_S="10")
    procs.callback(slow.stop)
    intent_id = pay.create(1_000)
    tx_id = f"btx_{intent_id}"
    until(lambda: banks.state("bank_a", tx_id) == "prepared", what="bank_a's prepare")
    slow.kill()
    slow.proc.wait(10)
    assert pay.tx(intent_id).decision is None
    assert banks.account("bank_a", pay.payer)["reserved"] == 1_000
    procs.enter_context(_worker(stack, banks, "bank-kill-prepare-after"))
    procs.enter_context(processes.celery_beat({**stack.env, **banks.env, **FAST_RESOLVER}))
    row = pay.final(intent_id)
    assert (row.status, row.failure_code) == ("failed", "bank_unavailable")
    tx = until(lambda: (t := pay.tx(intent_id)).completed_at and t, what="both aborts")
    assert (tx.decision, tx.reason) == ("abort", "presumed_abort")
    assert banks.state("bank_a", tx_id) == banks.state("bank_b", tx_id) == "aborted"
    assert banks.account("bank_a", pay.payer)["reserved"] == 0
    assert pay.moved() == (10_000, 0)
    pay.assert_conserved()


def test_a_worker_killed_after_the_decision_has_it_committed_by_the_scheduler(
    stack, banks, procs, vault
):
    # Every Commit takes 4 s: the worker is killed while it tells the banks.
    slow_commit = {"BANK_LATENCY_MS": "4000", "BANK_FAIL_METHODS": "Commit"}
    banks.start("bank_a", **slow_commit)
    banks.start("bank_b", **slow_commit)
    pay = Payment(stack, banks, vault)
    slow = _worker(stack, banks, "bank-kill-commit", BANK_RPC_TIMEOUT_S="10")
    procs.callback(slow.stop)
    intent_id = pay.create(1_000)
    until(lambda: (t := pay.tx(intent_id)) and t.decision == "commit", what="the decision")
    slow.kill()
    slow.proc.wait(10)
    tx_id = f"btx_{intent_id}"
    # The banks' Commits outlive their caller: each sees it gone and does nothing.
    for name in ("bank_a", "bank_b"):
        banks.procs[name].wait_for(f"bank {name}: commit {tx_id}: cancelled", timeout=15)
    assert banks.state("bank_a", tx_id) == banks.state("bank_b", tx_id) == "prepared"
    assert pay.intent(intent_id).status == "processing"
    procs.enter_context(_worker(stack, banks, "bank-kill-commit-after", BANK_RPC_TIMEOUT_S="10"))
    procs.enter_context(processes.celery_beat({**stack.env, **banks.env, **FAST_RESOLVER}))
    row = pay.final(intent_id)
    assert (row.status, row.settlement_status) == ("succeeded", "settled")
    tx = until(lambda: (t := pay.tx(intent_id)).completed_at and t, what="both commits")
    assert banks.state("bank_a", tx_id) == banks.state("bank_b", tx_id) == "committed"
    print(f"2PC timeline of {intent_id}, its coordinator killed after deciding:\n{_timeline(tx)}")
    assert pay.moved() == (9_000, 1_000 - row.fee_amount)
    pay.assert_conserved()


def _refund(pay: Payment, intent_id: str, amount: int):
    from shared.domain.refunds import CreateRefund
    from shared.services import refunds

    req = CreateRefund(payment_intent=intent_id, amount=amount, reason=None, metadata={})
    with UnitOfWork(pay.stack.engine) as u:
        row = refunds.create(u, pay.merchant, req)
        u.commit()
    return row


def _refund_row(pay: Payment, refund_id: str):
    from shared.db.tables import refunds

    with pay.stack.engine.connect() as conn:
        return conn.execute(select(refunds).where(refunds.c.id == refund_id)).one()


def _run_refund(pay: Payment, refund_id: str) -> None:
    """What the refund_bank task runs, in-process (this stack's broker is not the test's)."""
    from shared.services import bank_refunds

    bank_refunds.run(lambda: UnitOfWork(pay.stack.engine), pay.banks.client, [refund_id])


def test_a_bank_refund_runs_the_protocol_in_reverse(stack, banks, procs, vault):
    pay, intent_id = _paying(stack, banks, procs, vault, "bank-refund")
    fee = pay.final(intent_id).fee_amount
    refund = _refund(pay, intent_id, 400)
    assert (refund.status, refund.fee_refunded) == ("pending", fee * 400 // 1_000)
    # While it is pending, what it returns is not refundable again.
    with pytest.raises(Exception, match="greater than the unrefunded amount"):
        _refund(pay, intent_id, 601)
    _run_refund(pay, refund.id)
    done = _refund_row(pay, refund.id)
    assert done.status == "succeeded"
    with stack.engine.connect() as conn:
        tx = conn.execute(select(btx).where(btx.c.id == f"btx_{refund.id}")).one()
    assert (tx.kind, tx.decision, tx.completed_at is not None) == ("refund", "commit", True)
    # The payer got the amount back; the merchant's bank gave it less the returned fee.
    assert pay.moved() == (9_000 + 400, 1_000 - fee - (400 - done.fee_refunded))
    assert pay.intent(intent_id).amount_refunded == 400
    pay.assert_conserved()


def test_a_bank_refund_with_a_bank_down_fails_and_moves_nothing(stack, banks, procs, vault):
    pay, intent_id = _paying(stack, banks, procs, vault, "bank-refund-down")
    pay.final(intent_id)
    paid = pay.moved()
    banks.stop("bank_a")  # the payer's bank: the credit cannot be prepared
    refund = _refund(pay, intent_id, 1_000)
    _run_refund(pay, refund.id)
    assert _refund_row(pay, refund.id).status == "failed"
    assert banks.state("bank_b", f"btx_{refund.id}") == "aborted"  # its reservation released
    assert banks.account("bank_b", pay.merchant_account)["reserved"] == 0
    assert pay.intent(intent_id).amount_refunded == 0
    banks.start("bank_a")
    assert pay.moved() == paid
    # The whole amount is refundable again, and this time it goes through.
    again = _refund(pay, intent_id, 1_000)
    _run_refund(pay, again.id)
    assert _refund_row(pay, again.id).status == "succeeded"
    assert pay.moved()[0] == 10_000
    pay.assert_conserved()


def test_a_refund_whose_coordinator_never_ran_is_presumed_aborted_by_the_resolver(
    stack, banks, procs, vault
):
    from shared.services import bank_resolver

    pay, intent_id = _paying(stack, banks, procs, vault, "bank-refund-lost")
    pay.final(intent_id)
    refund = _refund(pay, intent_id, 300)  # its refund_bank message lost: nobody votes

    def resolve():
        new_uow = lambda: UnitOfWork(stack.engine)  # noqa: E731
        bank_resolver.resolve(new_uow, banks.client, decision_timeout_s=1)
        return _refund_row(pay, refund.id).status != "pending"

    until(resolve, timeout=15, what="the resolver's presumed abort")
    assert _refund_row(pay, refund.id).status == "failed"
    tx_id = f"btx_{refund.id}"
    assert banks.state("bank_a", tx_id) == banks.state("bank_b", tx_id) == "aborted"
    assert pay.intent(intent_id).amount_refunded == 0
    pay.assert_conserved()
