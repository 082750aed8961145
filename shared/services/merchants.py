"""Merchants, their API clients, limits and wallets (the CLI's and operator API's use cases).

Each mutation takes the ``actor`` who asks for it and appends its audit row
(before/after of what changed, never a secret) in the caller's transaction.
"""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db.tables import blocklist, merchant_limits, merchants, wallets
from shared.db.uow import UnitOfWork
from shared.domain import ledger as L
from shared.domain import operator_filters as filters
from shared.domain.limits import SCOPES
from shared.domain.merchant_admin import LIMIT_FIELDS, redact_url
from shared.money import CURRENCIES
from shared.services import audit, clients, ledger, webhook_endpoints
from shared.services.audit import Actor
from shared.services.errors import NotFound, ServiceError
from shared.services.ids import new_id


def create_merchant(
    uow: UnitOfWork,
    vault,
    name: str,
    webhook_url: str | None = None,
    allow_private=False,
    *,
    actor: Actor | str | None = None,
) -> dict:
    """Create a merchant with one API client (every scope) and its first webhook endpoint.

    The endpoint receives every event type, at ``webhook_url`` (none until one
    is set); the client's and the endpoint's secrets are returned only here.
    """
    if not isinstance(name, str) or not name.strip():
        raise ServiceError("name must not be empty", "name")
    if webhook_url is not None:
        webhook_endpoints.check_url(webhook_url, allow_private)
    merchant_id = new_id("mch")
    uow.conn.execute(insert(merchants).values(id=merchant_id, name=name))
    webhook_secret = webhook_endpoints.create_first(uow, vault, merchant_id, webhook_url)
    client = clients.create_client(uow, merchant_id)
    audit.record_if(
        uow,
        actor,
        "merchant.create",
        merchant_id,
        after={
            "id": merchant_id,
            "name": name,
            "webhook_url": redact_url(webhook_url),
            "client_id": client["client_id"],
        },
    )
    return {
        "merchant_id": merchant_id,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "webhook_secret": webhook_secret,
    }


def set_limits(
    uow: UnitOfWork,
    merchant_id: str,
    currency: str,
    scope: str,
    *,
    actor: Actor | str | None = None,
    **limits,
) -> None:
    """Set per-transaction, daily and monthly limits (minor units; None = default)."""
    if scope not in SCOPES:
        raise ServiceError(f"scope must be one of {SCOPES}", "scope")
    if currency not in CURRENCIES:
        raise ServiceError(f"unknown currency {currency}", "currency")
    require_merchant(uow, merchant_id)
    values = {k: limits.get(k) for k in LIMIT_FIELDS}
    key = (
        (merchant_limits.c.merchant_id == merchant_id)
        & (merchant_limits.c.currency == currency)
        & (merchant_limits.c.scope == scope)
    )
    old = uow.conn.execute(select(merchant_limits).where(key).with_for_update()).first()
    uow.conn.execute(
        pg_insert(merchant_limits)
        .values(merchant_id=merchant_id, currency=currency, scope=scope, **values)
        .on_conflict_do_update(index_elements=["merchant_id", "currency", "scope"], set_=values)
    )
    which = {"currency": currency, "scope": scope}
    audit.record_if(
        uow,
        actor,
        "merchant.set_limits",
        merchant_id,
        before=None if old is None else which | {k: getattr(old, k) for k in LIMIT_FIELDS},
        after=which | values,
    )


def set_fraud_threshold(
    uow: UnitOfWork, merchant_id: str, threshold: int, *, actor: Actor | str | None = None
) -> None:
    """Set the risk score at which the merchant's payments are blocked."""
    old = uow.conn.execute(
        select(merchants.c.fraud_block_threshold)
        .where(merchants.c.id == merchant_id)
        .with_for_update()
    ).first()
    if old is None:
        raise NotFound("merchant", merchant_id)
    uow.conn.execute(
        merchants.update()
        .where(merchants.c.id == merchant_id)
        .values(fraud_block_threshold=threshold)
    )
    audit.record_if(
        uow,
        actor,
        "merchant.set_fraud_threshold",
        merchant_id,
        before={"fraud_block_threshold": old.fraud_block_threshold},
        after={"fraud_block_threshold": threshold},
    )


def create_wallet(
    uow: UnitOfWork, owner: str, currency: str, *, actor: Actor | str | None = None
) -> dict:
    """A payer wallet: a ledger account that may never go below zero."""
    if currency not in CURRENCIES:
        raise ServiceError(f"unknown currency {currency}", "currency")
    wallet_id = new_id("wal")
    code = L.account_code("wallet", currency, wallet_id)
    account = ledger.account_ids(uow, {code: (currency, True)})[code]
    uow.conn.execute(
        insert(wallets).values(id=wallet_id, owner=owner, currency=currency, account_id=account)
    )
    made = {"wallet_id": wallet_id, "owner": owner, "currency": currency}
    audit.record_if(uow, actor, "wallet.create", wallet_id, after=made)
    return made


def fund_wallet(
    uow: UnitOfWork, wallet_id: str, amount: int, *, actor: Actor | str | None = None
) -> dict:
    """Credit a wallet from the external funding account."""
    if amount <= 0:
        raise ServiceError("amount must be a positive integer (minor units)", "amount")
    wallet = uow.conn.execute(select(wallets).where(wallets.c.id == wallet_id)).first()
    if wallet is None:
        raise NotFound("wallet", wallet_id)
    funding = L.account_code("wallet_funding", wallet.currency)
    source = ledger.account_ids(uow, {funding: (wallet.currency, False)})[funding]
    ledger.record(
        uow,
        [
            L.Transfer(
                kind=L.POSTED,
                debit=source,
                credit=wallet.account_id,
                amount=amount,
                currency=wallet.currency,
                reason="wallet_funding",
            )
        ],
    )
    balance = wallet_balance(uow, wallet_id)
    audit.record_if(
        uow,
        actor,
        "wallet.fund",
        wallet_id,
        before={"balance": balance - amount},
        after={"balance": balance, "amount": amount, "currency": wallet.currency},
    )
    return {"wallet_id": wallet_id, "balance": balance}


def wallet_balance(uow: UnitOfWork, wallet_id: str) -> int:
    """What the wallet can still spend (minor units)."""
    wallet = uow.conn.execute(select(wallets).where(wallets.c.id == wallet_id)).first()
    if wallet is None:
        raise NotFound("wallet", wallet_id)
    return ledger.lock_balances(uow, [wallet.account_id])[wallet.account_id].spendable()


def set_bank_account(
    uow: UnitOfWork, merchant_id: str, bank: str, account: str, *, actor: str | None = None
) -> dict:
    """Name the bank account the merchant's bank payments are credited to (audited)."""
    before = uow.conn.execute(
        select(merchants.c.settlement_bank, merchants.c.settlement_bank_account)
        .where(merchants.c.id == merchant_id)
        .with_for_update()
    ).first()
    if before is None:
        raise NotFound("merchant", merchant_id)
    uow.conn.execute(
        merchants.update()
        .where(merchants.c.id == merchant_id)
        .values(settlement_bank=bank, settlement_bank_account=account)
    )
    out = {"merchant_id": merchant_id, "bank": bank, "account": account}
    audit.record_if(
        uow,
        actor,
        "merchant.set_bank_account",
        merchant_id,
        before={"bank": before.settlement_bank, "account": before.settlement_bank_account},
        after=out,
    )
    return out


def require_merchant(uow: UnitOfWork, merchant_id: str) -> None:
    """NotFound unless the merchant exists."""
    if (
        uow.conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first()
        is None
    ):
        raise NotFound("merchant", merchant_id)


def block(
    uow: UnitOfWork, kind: str, value: str, reason: str | None = None, *, actor: Actor
) -> dict:
    """Add a value to the fraud blocklist (idempotent), audited as ``blocklist.add``."""
    kind = filters.block_kind(kind)
    value = filters.block_value(kind, value)
    before = _blocked(uow, kind, value, lock=True)
    if before is None:
        uow.conn.execute(
            pg_insert(blocklist)
            .values(kind=kind, value=value, reason=reason)
            .on_conflict_do_nothing(index_elements=["kind", "value"])
        )
    # Blocked already: nothing changes, but the attempt is still someone's act.
    after = before or {"kind": kind, "value": value, "reason": reason}
    audit.record_as(uow, actor, "blocklist.add", f"{kind}:{value}", before=before, after=after)
    return {"kind": kind, "value": value, "blocked": True}


def unblock(uow: UnitOfWork, kind: str, value: str, *, actor: Actor) -> dict:
    """Remove a value from the blocklist, audited as ``blocklist.remove``; NotFound if absent."""
    kind = filters.block_kind(kind)
    value = filters.block_value(kind, value)
    gone = uow.conn.execute(
        blocklist.delete()
        .where(blocklist.c.kind == kind, blocklist.c.value == value)
        .returning(blocklist.c.kind, blocklist.c.value, blocklist.c.reason)
    ).first()
    if gone is None:
        raise NotFound("blocklist entry", f"{kind}:{value}", "value")
    audit.record_as(uow, actor, "blocklist.remove", f"{kind}:{value}", before=dict(gone._mapping))
    return {"kind": kind, "value": value, "blocked": False}


def _blocked(uow: UnitOfWork, kind: str, value: str, *, lock: bool = False) -> dict | None:
    query = select(blocklist.c.kind, blocklist.c.value, blocklist.c.reason).where(
        blocklist.c.kind == kind, blocklist.c.value == value
    )
    row = uow.conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else dict(row._mapping)
