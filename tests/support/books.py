"""Reconciliation of one test's own rows (the whole ledger is audited once, at the end).

Tests of a layer share its database, so a check of the whole ledger in one test
fails for another test's leftovers (and passes or fails by test order). Each
test checks what it made: its merchants' accounts and intents, its wallets.
These are the product's own reconciliation queries (shared.services.reconcile),
filtered to those rows; ``whole_ledger`` runs them unfiltered, once per layer
(tests/integration/conftest.py ``ledger_audit``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import Connection, text

from shared.services import reconcile
from tests.support.units import bound


def own_discrepancies(
    conn: Connection, merchant_ids: Iterable[str], wallet_ids: Iterable[str] = ()
) -> list[str]:
    """What does not add up among the accounts and intents of these merchants and wallets."""
    merchants = sorted(set(merchant_ids))
    patterns = [f"merchant:{m}:%" for m in merchants] + [f"wallet:{w}" for w in wallet_ids]
    problems = []
    accounts = conn.execute(
        text(f"SELECT * FROM ({reconcile._ACCOUNT_SUMS}) s WHERE s.code LIKE ANY(:p)"),
        {"p": patterns},
    )
    for r in accounts:
        stored = (r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted)
        summed = (r.dp, r.dpo, r.cp, r.cpo)
        if tuple(map(int, stored)) != tuple(map(int, summed)):
            problems.append(f"account {r.code}: balances {stored} != sum of entries {summed}")
    ours = "SELECT id FROM payment_intents WHERE merchant_id = ANY(:m)"
    for query, what in (
        (reconcile._SUCCEEDED_WITHOUT_CAPTURE, "succeeded without its capture transfer"),
        (reconcile._HOLD_MISMATCH, "ended but its hold was never released"),
    ):
        found = conn.execute(
            text(f"SELECT id FROM ({query}) q WHERE q.id IN ({ours})"), {"m": merchants}
        )
        problems += [f"intent {intent_id}: {what}" for (intent_id,) in found]
    return problems


def concerning(conn: Connection, problems: Iterable[str], merchant_ids: Iterable[str]) -> list[str]:
    """The problems (as reconcile and the daily report word them) that name these merchants'
    accounts, intents or transfers; the rest are another test's, for the layer's audit."""
    merchants = sorted(set(merchant_ids))
    intents = set(
        conn.execute(
            text("SELECT id FROM payment_intents WHERE merchant_id = ANY(:m)"), {"m": merchants}
        ).scalars()
    )
    transfers = {
        str(t)
        for t in conn.execute(
            text(
                "SELECT t.id FROM ledger_transfers t"
                " JOIN ledger_accounts d ON d.id = t.debit_account_id"
                " JOIN ledger_accounts c ON c.id = t.credit_account_id"
                " WHERE t.intent_id = ANY(:i) OR d.code LIKE ANY(:p) OR c.code LIKE ANY(:p)"
            ),
            {"i": sorted(intents), "p": [f"merchant:{m}:%" for m in merchants]},
        ).scalars()
    }
    named = re.compile(r"^(account|intent|transfer) (\S+?):? ")
    out = []
    for problem in problems:
        m = named.match(problem)
        if m is None:
            continue
        kind, name = m.groups()
        if (
            (kind == "account" and any(name.startswith(f"merchant:{x}:") for x in merchants))
            or (kind == "intent" and name in intents)
            or (kind == "transfer" and name in transfers)
        ):
            out.append(problem)
    return out


def whole_ledger(engine) -> list[str]:
    """Every discrepancy in the database, read in one snapshot."""
    snapshot = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    with snapshot as conn, conn.begin():
        return reconcile.discrepancies(bound(conn))
