"""Reconciliation: the ledger balances, and the intents agree with it."""

from __future__ import annotations

from sqlalchemy import Connection, text

# Each account's four balances recomputed from its transfers. A pending
# transfer counts as pending until a post/void/expire names it.
_ACCOUNT_SUMS = """
WITH resolved AS (SELECT pending_id FROM ledger_transfers WHERE pending_id IS NOT NULL),
sides AS (
    SELECT t.debit_account_id AS account, t.kind, t.amount, 'd' AS side,
           t.id IN (SELECT pending_id FROM resolved) AS is_resolved
    FROM ledger_transfers t
    UNION ALL
    SELECT t.credit_account_id, t.kind, t.amount, 'c',
           t.id IN (SELECT pending_id FROM resolved)
    FROM ledger_transfers t
)
SELECT a.id, a.code, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
    COALESCE(sum(s.amount) FILTER (WHERE s.side = 'd' AND s.kind = 'pending'
                                   AND NOT s.is_resolved), 0) AS dp,
    COALESCE(sum(s.amount) FILTER (WHERE s.side = 'd'
                                   AND s.kind IN ('posted', 'post_pending')), 0) AS dpo,
    COALESCE(sum(s.amount) FILTER (WHERE s.side = 'c' AND s.kind = 'pending'
                                   AND NOT s.is_resolved), 0) AS cp,
    COALESCE(sum(s.amount) FILTER (WHERE s.side = 'c'
                                   AND s.kind IN ('posted', 'post_pending')), 0) AS cpo
FROM ledger_accounts a LEFT JOIN sides s ON s.account = a.id
GROUP BY a.id
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


def discrepancies(conn: Connection) -> list[str]:
    """Everything that does not add up; an empty list means the books balance."""
    problems = []
    for cur, dpo, cpo, dp, cp in conn.execute(text(_CURRENCY_TOTALS)):
        if dpo != cpo or dp != cp:
            problems.append(f"{cur}: debits {dpo}/{dp} != credits {cpo}/{cp} (posted/pending)")
    for r in conn.execute(text(_ACCOUNT_SUMS)):
        stored = (r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted)
        summed = (r.dp, r.dpo, r.cp, r.cpo)
        if tuple(map(int, stored)) != tuple(map(int, summed)):
            problems.append(f"account {r.code}: balances {stored} != sum of entries {summed}")
    for (intent_id,) in conn.execute(text(_SUCCEEDED_WITHOUT_CAPTURE)):
        problems.append(f"intent {intent_id}: succeeded without its capture transfer")
    for (intent_id,) in conn.execute(text(_HOLD_MISMATCH)):
        problems.append(f"intent {intent_id}: ended but its hold was never released")
    return problems
