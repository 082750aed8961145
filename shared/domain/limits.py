"""Limit reservations: which intents fit under which limits.

A reservation counts an intent's amount against running totals (daily and
monthly, for the merchant and for the payer). ``allocate`` decides a whole
batch at once against totals that the caller has locked, so concurrent
batches cannot overshoot: the caller holds the counter rows FOR UPDATE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

SCOPES = ("merchant", "payer")


@dataclass(frozen=True)
class Limits:
    per_transaction: int | None = None
    daily: int | None = None
    monthly: int | None = None


@dataclass(frozen=True)
class LimitRequest:
    intent_id: str
    amount: int
    merchant: Limits
    payer: Limits
    # counter keys, in the same order as ``counter_keys`` returns them
    keys: tuple[str, str, str, str]


@dataclass(frozen=True)
class Decision:
    intent_id: str
    accepted: bool
    reason: str | None = None  # which limit refused it


def counter_keys(merchant_id: str, payer_key: str, currency: str, day: date):
    """Counter keys for (merchant daily, merchant monthly, payer daily, payer monthly)."""
    d, m = day.isoformat(), day.strftime("%Y-%m")
    return (
        f"m:{merchant_id}:{currency}:d:{d}",
        f"m:{merchant_id}:{currency}:m:{m}",
        f"p:{merchant_id}:{payer_key}:{currency}:d:{d}",
        f"p:{merchant_id}:{payer_key}:{currency}:m:{m}",
    )


def allocate(requests: Iterable[LimitRequest], used: Mapping[str, int]) -> list[Decision]:
    """Accept requests in order while every limit they touch still fits."""
    totals = dict(used)
    decisions = []
    for req in requests:
        reason = _refusal(req, totals)
        if reason is None:
            for key in req.keys:
                totals[key] = totals.get(key, 0) + req.amount
        decisions.append(Decision(req.intent_id, reason is None, reason))
    return decisions


def _refusal(req: LimitRequest, totals: Mapping[str, int]) -> str | None:
    md, mm, pd, pm = req.keys
    checks = (
        ("merchant per-transaction", req.merchant.per_transaction, 0),
        ("payer per-transaction", req.payer.per_transaction, 0),
        ("merchant daily", req.merchant.daily, totals.get(md, 0)),
        ("merchant monthly", req.merchant.monthly, totals.get(mm, 0)),
        ("payer daily", req.payer.daily, totals.get(pd, 0)),
        ("payer monthly", req.payer.monthly, totals.get(pm, 0)),
    )
    for name, limit, current in checks:
        if limit is not None and current + req.amount > limit:
            return name
    return None


def default_limits(scope: str, unit: int) -> Limits:
    """Limits applied when a merchant has none configured, in minor units."""
    if scope == "merchant":
        return Limits(per_transaction=None, daily=10_000_000 * unit, monthly=100_000_000 * unit)
    return Limits(per_transaction=None, daily=1_000_000 * unit, monthly=10_000_000 * unit)
