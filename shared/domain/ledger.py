"""Double-entry transfers in TigerBeetle's two-phase model, as pure data.

An account has four running balances. A transfer moves one amount from a
debit account to a credit account, so debits always equal credits:

- ``posted``: debits_posted / credits_posted grow by the amount;
- ``pending`` (a hold): debits_pending / credits_pending grow;
- ``post_pending``: the hold leaves pending, and the posted amount (which
  may be smaller: partial capture releases the rest) joins posted;
- ``void_pending`` / ``expire_pending``: the hold leaves pending, nothing posts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POSTED = "posted"
PENDING = "pending"
POST_PENDING = "post_pending"
VOID_PENDING = "void_pending"
EXPIRE_PENDING = "expire_pending"


@dataclass
class Balance:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    no_overdraft: bool = False

    def spendable(self) -> int:
        """What a no-overdraft account can still be debited."""
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(frozen=True)
class Transfer:
    kind: str
    debit: int  # account id
    credit: int
    amount: int  # posted amount for post_pending; the held amount otherwise
    currency: str
    reason: str
    intent_id: str | None = None
    pending_id: int | None = None
    # The held amount being resolved (post/void/expire of a pending transfer).
    pending_amount: int = 0
    timeout_at: object = None


@dataclass
class Deltas:
    """Accumulated balance changes per account for one batch of transfers."""

    by_account: dict[int, list[int]] = field(default_factory=dict)

    def _add(self, account: int, dp: int = 0, dpo: int = 0, cp: int = 0, cpo: int = 0):
        d = self.by_account.setdefault(account, [0, 0, 0, 0])
        d[0] += dp
        d[1] += dpo
        d[2] += cp
        d[3] += cpo

    def apply(self, t: Transfer) -> None:
        """Add one transfer's effect on its two accounts."""
        if t.amount <= 0 and t.kind in (POSTED, PENDING, POST_PENDING):
            raise ValueError("transfer amount must be positive")
        if t.kind == POSTED:
            self._add(t.debit, dpo=t.amount)
            self._add(t.credit, cpo=t.amount)
        elif t.kind == PENDING:
            self._add(t.debit, dp=t.amount)
            self._add(t.credit, cp=t.amount)
        elif t.kind == POST_PENDING:
            if t.amount > t.pending_amount:
                raise ValueError("cannot post more than the pending amount")
            self._add(t.debit, dp=-t.pending_amount, dpo=t.amount)
            self._add(t.credit, cp=-t.pending_amount, cpo=t.amount)
        elif t.kind in (VOID_PENDING, EXPIRE_PENDING):
            self._add(t.debit, dp=-t.pending_amount)
            self._add(t.credit, cp=-t.pending_amount)
        else:
            raise ValueError(f"unknown transfer kind {t.kind!r}")


def account_code(kind: str, currency: str, owner: str | None = None) -> str:
    """Stable account code: e.g. ``merchant:mch_1:pending:USD``."""
    codes = {
        "merchant_pending": f"merchant:{owner}:pending:{currency}",
        "merchant_available": f"merchant:{owner}:available:{currency}",
        "fees": f"platform:fees:{currency}",
        "card_clearing": f"external:card_clearing:{currency}",
        # Money moved through the sandbox banks: payers' debits in, merchants' credits out.
        "bank_clearing": f"external:bank_clearing:{currency}",
        "wallet_funding": f"external:wallet_funding:{currency}",
        "wallet": f"wallet:{owner}",
    }
    return codes[kind]
