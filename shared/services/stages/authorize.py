"""Stage 4: hold the funds, ask the acquirer, then capture, keep or release.

Three steps, because the acquirer call must not run inside a transaction:
1. ``place_holds``: a pending ledger transfer per intent (a wallet without
   the funds fails here), committed before anyone is asked for money;
2. ``ask_acquirer``: outside any transaction, concurrently;
3. ``apply``: compare-and-set on the stage again, so a duplicate delivery
   that raced us changes nothing; approved automatic captures post the
   hold and the fee, manual ones keep it with an expiry; declines void it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import bindparam, func, select

from shared.connectors.base import AuthRequest, AuthResult
from shared.db.tables import payment_intents as pi
from shared.db.tables import wallets
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.domain.intent import FailureCode, Stage, Status
from shared.services import ledger, outcomes
from shared.services.stages.common import StageResult, claim, now

APPROVED_WALLET = AuthResult(outcome="approved", reference="wallet")
# The outside account a payment method's money comes from (wallets pay from their own).
CLEARING = {"card": "card_clearing", "bank_account": "bank_clearing"}
_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="acquirer")


def place_holds(uow: UnitOfWork, ids, hold_ttl_s: int) -> StageResult:
    """Hold funds for every claimed intent; ``advanced`` are those ready to authorize."""
    rows = claim(uow, ids, Stage.FEE_COMPUTED)
    fresh = [r for r in rows if r.hold_transfer_id is None]
    if not fresh:
        return StageResult(advanced=[r.id for r in rows])
    t = now(uow)
    payers = _payer_accounts(uow, fresh)
    merchant = ledger.account_ids(
        uow,
        {
            L.account_code("merchant_pending", r.currency, r.merchant_id): (r.currency, False)
            for r in fresh
        },
    )
    # Only wallets may not be overdrawn: card clearing's balance decides nothing, and
    # record() writes it last (its row lock is the hottest there is).
    balances = ledger.lock_balances(
        uow, [a for a in payers.values() if a is not None], guarded_only=True
    )
    holdable, broke = [], []
    for r in fresh:
        account = payers[r.id]
        bal = balances.get(account)
        if account is None or (bal and bal.no_overdraft and bal.spendable() < r.amount):
            broke.append(r)
            continue
        if bal:
            bal.debits_pending += r.amount
        holdable.append(r)
    transfer_ids = ledger.record(
        uow,
        [
            L.Transfer(
                kind=L.PENDING,
                debit=payers[r.id],
                credit=merchant[L.account_code("merchant_pending", r.currency, r.merchant_id)],
                amount=r.amount,
                currency=r.currency,
                reason="authorization",
                intent_id=r.id,
                timeout_at=t + timedelta(seconds=hold_ttl_s),
            )
            for r in holdable
        ],
    )
    if holdable:
        uow.conn.execute(
            pi.update()
            .where(pi.c.id == bindparam("_id"))
            .values(hold_transfer_id=bindparam("hold"), updated_at=func.now()),
            [{"_id": r.id, "hold": h} for r, h in zip(holdable, transfer_ids, strict=True)],
        )
    outcomes.fail(uow, broke, FailureCode.INSUFFICIENT_FUNDS)
    broke_ids = {r.id for r in broke}
    return StageResult(
        advanced=[r.id for r in rows if r.id not in broke_ids], failed=sorted(broke_ids)
    )


def held(uow: UnitOfWork, ids) -> list:
    """Intents with a hold still waiting for the acquirer's answer."""
    return uow.conn.execute(
        select(pi).where(
            pi.c.id.in_(list(ids)),
            pi.c.status == Status.PROCESSING,
            pi.c.stage == Stage.FEE_COMPUTED,
            pi.c.hold_transfer_id.is_not(None),
        )
    ).all()


def ask_acquirer(rows, acquirer, vault) -> dict[str, AuthResult]:
    """Authorize card intents concurrently (wallet holds need no acquirer)."""

    def one(r) -> AuthResult:
        if r.pm_type == "wallet":
            return APPROVED_WALLET
        try:
            req = AuthRequest(
                intent_id=r.id,
                amount=r.amount,
                currency=r.currency,
                pan=vault.decrypt(r.card_token, aad=r.id),
                exp_month=r.card_exp_month,
                exp_year=r.card_exp_year,
            )
            return acquirer.authorize(req)
        except Exception as exc:
            # One intent's broken token or connector error must not sink the
            # batch: it is retried, then failed with processing_error.
            return AuthResult(
                outcome="transient_error", code="processing_error", message=type(exc).__name__
            )

    results = list(_pool.map(one, rows))
    return {r.id: res for r, res in zip(rows, results, strict=True)}


def apply(
    uow: UnitOfWork, results: dict[str, AuthResult], *, max_attempts: int, hold_ttl_s: int
) -> StageResult:
    """Record the acquirer's answers for intents still waiting at this stage."""
    rows = claim(uow, results, Stage.FEE_COMPUTED)
    result = StageResult()
    rows = [r for r in rows if r.hold_transfer_id is not None]
    if not rows:
        return result
    t = now(uow)
    approved = [r for r in rows if results[r.id].outcome == "approved"]
    automatic = [r for r in approved if r.capture_method == "automatic"]
    manual = [r for r in approved if r.capture_method == "manual"]
    outcomes.capture(
        uow,
        automatic,
        {r.id: r.amount for r in automatic},
        {r.id: r.fee_amount for r in automatic},
    )
    outcomes.hold_for_capture(uow, manual, t + timedelta(seconds=hold_ttl_s))
    _paid_out_at_bank(uow, [r for r in automatic if r.pm_type == "bank_account"])
    for r in rows:
        res = results[r.id]
        if res.outcome == "declined":
            outcomes.fail(uow, [r], FailureCode(res.code), res.message)
            result.failed.append(r.id)
        elif res.outcome == "transient_error":
            if r.auth_attempts + 1 >= max_attempts:
                outcomes.fail(uow, [r], FailureCode.PROCESSING_ERROR)
                result.failed.append(r.id)
            else:
                uow.conn.execute(
                    pi.update()
                    .where(pi.c.id == r.id)
                    .values(auth_attempts=pi.c.auth_attempts + 1, updated_at=func.now())
                )
                result.retry.append(r.id)
    result.advanced = [r.id for r in approved]
    result.settle_now = [
        r.id for r in automatic if r.priority == "instant" and r.pm_type != "bank_account"
    ]
    return result


def _paid_out_at_bank(uow: UnitOfWork, rows) -> None:
    """Bank payments are settled by their own commit: the merchant's bank got the net.

    So the ledger pays the net out of the merchant's pending balance back to bank
    clearing at once (what stays in clearing is the platform's fee), and the intent
    is settled: no settlement window moves it again.
    """
    if not rows:
        return
    codes = {L.account_code("bank_clearing", r.currency): (r.currency, False) for r in rows}
    codes |= {
        L.account_code("merchant_pending", r.currency, r.merchant_id): (r.currency, False)
        for r in rows
    }
    accounts = ledger.account_ids(uow, codes)
    ledger.record(
        uow,
        [
            L.Transfer(
                kind=L.POSTED,
                debit=accounts[L.account_code("merchant_pending", r.currency, r.merchant_id)],
                credit=accounts[L.account_code("bank_clearing", r.currency)],
                amount=r.amount - (r.fee_amount or 0),
                currency=r.currency,
                reason="bank_payout",
                intent_id=r.id,
            )
            for r in rows
            if r.amount > (r.fee_amount or 0)
        ],
    )
    uow.conn.execute(
        pi.update()
        .where(pi.c.id.in_([r.id for r in rows]))
        .values(settlement_status="settled", settled_at=func.now())
    )


def _payer_accounts(uow: UnitOfWork, rows) -> dict[str, int | None]:
    """The account each payer pays from: card clearing, or the wallet's own."""
    wallet_ids = sorted({r.wallet_id for r in rows if r.wallet_id})
    wallet_rows = {}
    if wallet_ids:
        found = uow.conn.execute(wallets.select().where(wallets.c.id.in_(wallet_ids)))
        wallet_rows = {w.id: w for w in found}
    clearing = ledger.account_ids(
        uow,
        {
            L.account_code(CLEARING[r.pm_type], r.currency): (r.currency, False)
            for r in rows
            if r.pm_type in CLEARING
        },
    )
    out: dict[str, int | None] = {}
    for r in rows:
        if r.pm_type in CLEARING:
            out[r.id] = clearing[L.account_code(CLEARING[r.pm_type], r.currency)]
        else:
            w = wallet_rows.get(r.wallet_id)
            out[r.id] = w.account_id if w is not None and w.currency == r.currency else None
    return out
