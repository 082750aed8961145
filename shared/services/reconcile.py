"""Reconciliation: the ledger balances, and the intents agree with it."""

from __future__ import annotations

from sqlalchemy import text

from shared.db.uow import UnitOfWork

# Each account's four balances recomputed from its transfers. A pending
# transfer counts as pending until a post/void/expire names it. Set-based
# throughout: "names it" is a hash join against the distinct pending_ids, and
# the sums are grouped per account before the join to ledger_accounts. The
# first version asked ``t.id IN (SELECT pending_id ...)``, a subplan Postgres
# hashes only while the ids fit in work_mem: past about a million holds it
# scanned them once per transfer (a planned cost of 2.3e10 for 1,000,000
# intents, BENCH_PRELOAD), and the daily report's reconciliation never ended.
_ACCOUNT_SUMS = """
WITH resolved AS (
    SELECT DISTINCT pending_id AS id FROM ledger_transfers WHERE pending_id IS NOT NULL
),
marked AS (
    SELECT t.debit_account_id, t.credit_account_id, t.kind, t.amount,
           r.id IS NOT NULL AS is_resolved
    FROM ledger_transfers t LEFT JOIN resolved r ON r.id = t.id
),
sides AS (
    SELECT debit_account_id AS account, kind, amount, 'd' AS side, is_resolved FROM marked
    UNION ALL
    SELECT credit_account_id, kind, amount, 'c', is_resolved FROM marked
),
sums AS (
    SELECT account,
        sum(amount) FILTER (WHERE side = 'd' AND kind = 'pending' AND NOT is_resolved) AS dp,
        sum(amount) FILTER (WHERE side = 'd' AND kind IN ('posted', 'post_pending')) AS dpo,
        sum(amount) FILTER (WHERE side = 'c' AND kind = 'pending' AND NOT is_resolved) AS cp,
        sum(amount) FILTER (WHERE side = 'c' AND kind IN ('posted', 'post_pending')) AS cpo
    FROM sides GROUP BY account
)
SELECT a.id, a.code, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
    COALESCE(s.dp, 0) AS dp, COALESCE(s.dpo, 0) AS dpo,
    COALESCE(s.cp, 0) AS cp, COALESCE(s.cpo, 0) AS cpo
FROM ledger_accounts a LEFT JOIN sums s ON s.account = a.id
"""

_CURRENCY_TOTALS = """
SELECT currency, sum(debits_posted), sum(credits_posted), sum(debits_pending), sum(credits_pending)
FROM ledger_accounts GROUP BY currency
"""

_SUCCEEDED_WITHOUT_CAPTURE = """
SELECT i.id FROM payment_intents i
WHERE i.status = 'succeeded' AND NOT EXISTS (
    SELECT 1 FROM ledger_transfers t
    WHERE t.intent_id = i.id AND t.kind = 'post_pending' AND t.amount = i.amount_received)
"""

_HOLD_MISMATCH = """
SELECT i.id FROM payment_intents i
WHERE i.status IN ('failed', 'canceled') AND i.hold_transfer_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ledger_transfers t WHERE t.pending_id = i.hold_transfer_id)
"""


def discrepancies(uow: UnitOfWork) -> list[str]:
    """Everything that does not add up; an empty list means the books balance."""
    problems = []
    for cur, dpo, cpo, dp, cp in uow.conn.execute(text(_CURRENCY_TOTALS)):
        if dpo != cpo or dp != cp:
            problems.append(f"{cur}: debits {dpo}/{dp} != credits {cpo}/{cp} (posted/pending)")
    for r in uow.conn.execute(text(_ACCOUNT_SUMS)):
        stored = (r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted)
        summed = (r.dp, r.dpo, r.cp, r.cpo)
        if tuple(map(int, stored)) != tuple(map(int, summed)):
            problems.append(f"account {r.code}: balances {stored} != sum of entries {summed}")
    for (intent_id,) in uow.conn.execute(text(_SUCCEEDED_WITHOUT_CAPTURE)):
        problems.append(f"intent {intent_id}: succeeded without its capture transfer")
    for (intent_id,) in uow.conn.execute(text(_HOLD_MISMATCH)):
        problems.append(f"intent {intent_id}: ended but its hold was never released")
    return problems


# Checks scoped to one UTC day [start, end), so their cost follows the day's
# volume, not the ledger's age.
_CROSS_CURRENCY = """
SELECT t.id FROM ledger_transfers t
JOIN ledger_accounts d ON d.id = t.debit_account_id
JOIN ledger_accounts c ON c.id = t.credit_account_id
WHERE t.created_at >= :start AND t.created_at < :end
  AND (t.currency <> d.currency OR t.currency <> c.currency)
ORDER BY t.id
"""

_OVER_POSTED = """
SELECT t.id FROM ledger_transfers t JOIN ledger_transfers p ON p.id = t.pending_id
WHERE t.created_at >= :start AND t.created_at < :end AND t.kind = 'post_pending'
  AND (t.amount > p.amount OR p.kind <> 'pending')
ORDER BY t.id
"""

_SUCCEEDED_WITHOUT_FEE = """
SELECT i.id FROM payment_intents i
WHERE i.status = 'succeeded' AND i.fee_amount > 0
  AND i.finalized_at >= :start AND i.finalized_at < :end
  AND NOT EXISTS (
    SELECT 1 FROM ledger_transfers t
    WHERE t.intent_id = i.id AND t.reason = 'fee' AND t.amount = i.fee_amount)
ORDER BY i.id
"""

# Intents refunded that day: the intent, its refund rows and its refund
# transfers must agree on how much went back.
_REFUND_MISMATCH = """
WITH touched AS (
    SELECT DISTINCT intent_id FROM ledger_transfers
    WHERE created_at >= :start AND created_at < :end AND reason = 'refund'
)
SELECT i.id, i.amount_refunded,
    (SELECT coalesce(sum(amount), 0) FROM ledger_transfers
     WHERE intent_id = i.id AND reason = 'refund') AS in_ledger,
    (SELECT coalesce(sum(amount), 0) FROM refunds
     WHERE payment_intent_id = i.id AND status = 'succeeded') AS in_refunds
FROM payment_intents i JOIN touched ON touched.intent_id = i.id
ORDER BY i.id
"""


def day_discrepancies(uow: UnitOfWork, start, end) -> list[str]:
    """What does not add up among the transfers and intents of one day."""
    params = {"start": start, "end": end}
    problems = []
    for (tid,) in uow.conn.execute(text(_CROSS_CURRENCY), params):
        problems.append(f"transfer {tid}: currency differs from its accounts'")
    for (tid,) in uow.conn.execute(text(_OVER_POSTED), params):
        problems.append(f"transfer {tid}: posts more than its hold, or resolves a non-hold")
    for (intent_id,) in uow.conn.execute(text(_SUCCEEDED_WITHOUT_FEE), params):
        problems.append(f"intent {intent_id}: succeeded without its fee transfer")
    for r in uow.conn.execute(text(_REFUND_MISMATCH), params):
        if not int(r.amount_refunded) == int(r.in_ledger) == int(r.in_refunds):
            problems.append(
                f"intent {r.id}: refunded {r.amount_refunded}, ledger {r.in_ledger},"
                f" refunds {r.in_refunds}"
            )
    return problems
