"""Validation of merchant requests, as pure functions.

Each failure names the offending ``param`` (Stripe style: ``payment_method[card][number]``)
and a machine-readable ``code``. Nothing here touches a database, so a rejected
request has changed nothing by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from shared.domain import cards
from shared.domain.intent import CAPTURE_METHODS, PRIORITIES
from shared.money import CURRENCIES, is_amount

MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LEN = 40
MAX_METADATA_VALUE_LEN = 500
MAX_DESCRIPTION_LEN = 1000
MAX_ID_LEN = 255
BANK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
BANK_ACCOUNT = re.compile(r"^acc_[0-9a-f]{1,60}$")


class ValidationError(ValueError):
    def __init__(self, param: str, message: str, code: str = "parameter_invalid"):
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code


@dataclass(frozen=True)
class CardInput:
    pan: str
    exp_month: int
    exp_year: int
    brand: str
    last4: str


@dataclass(frozen=True)
class BankAccountInput:
    bank: str
    account: str


@dataclass(frozen=True)
class CreateIntent:
    amount: int
    currency: str
    capture_method: str
    priority: str
    card: CardInput | None
    wallet_id: str | None
    description: str | None
    metadata: dict
    customer: str | None
    bank_account: BankAccountInput | None = None


CREATE_FIELDS = {
    "amount",
    "currency",
    "payment_method",
    "capture_method",
    "priority",
    "description",
    "metadata",
    "customer",
}


def reject_unknown(body: dict, allowed: set[str], prefix: str = "") -> None:
    """Refuse fields the API does not know (a typo must not be silently ignored)."""
    for key in body:
        if key not in allowed:
            param = f"{prefix}[{key}]" if prefix else key
            raise ValidationError(
                param, f"Received unknown parameter: {param}", "parameter_unknown"
            )


def require_object(body: object, param: str = "") -> dict:
    """The body (or ``param``) if it is a JSON object; ValidationError if not."""
    if not isinstance(body, dict):
        where = f"`{param}`" if param else "The request body"
        raise ValidationError(param or "body", f"{where} must be a JSON object.")
    return body


def amount_param(value: object, currency: str, param: str = "amount") -> int:
    """An integer amount in the currency's minor unit, within its bounds."""
    if value is None:
        raise ValidationError(param, f"Missing required param: {param}.", "parameter_missing")
    if not is_amount(value):
        raise ValidationError(
            param,
            f"`{param}` must be an integer in the currency's minor unit (not a float or string).",
            "parameter_invalid_integer",
        )
    if value < 1:
        raise ValidationError(param, f"`{param}` must be at least 1.", "amount_too_small")
    cur = CURRENCIES[currency]
    if value > cur.max_minor:
        raise ValidationError(
            param, f"`{param}` must be at most {cur.max_minor} for {currency}.", "amount_too_large"
        )
    return value


def currency_param(value: object) -> str:
    """A supported currency code, upper-cased."""
    if value is None:
        raise ValidationError("currency", "Missing required param: currency.", "parameter_missing")
    if not isinstance(value, str) or value.upper() not in CURRENCIES:
        known = ", ".join(CURRENCIES)
        raise ValidationError(
            "currency", f"Invalid currency: {value!r}. Supported: {known}.", "invalid_currency"
        )
    return value.upper()


def choice(body: dict, param: str, options: tuple[str, ...], default: str) -> str:
    """``body[param]`` (or ``default``) if it is one of ``options``."""
    value = body.get(param, default)
    if value not in options:
        raise ValidationError(param, f"`{param}` must be one of: {', '.join(options)}.")
    return value


def optional_str(body: dict, param: str, max_len: int) -> str | None:
    """``body[param]``: absent, or a string of at most ``max_len`` characters."""
    value = body.get(param)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise ValidationError(param, f"`{param}` must be a string of at most {max_len} characters.")
    return value


def metadata_param(value: object) -> dict:
    """Stripe's limits: 50 keys, keys up to 40 characters, values up to 500."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("metadata", "`metadata` must be an object of string values.")
    if len(value) > MAX_METADATA_KEYS:
        raise ValidationError("metadata", f"`metadata` can have at most {MAX_METADATA_KEYS} keys.")
    for key, item in value.items():
        param = f"metadata[{key[:MAX_METADATA_KEY_LEN]}]"
        if not key or len(key) > MAX_METADATA_KEY_LEN:
            raise ValidationError(param, "Metadata keys must be 1 to 40 characters long.")
        if not isinstance(item, str) or len(item) > MAX_METADATA_VALUE_LEN:
            raise ValidationError(
                param, "Metadata values must be strings of at most 500 characters."
            )
    return dict(value)


def card_param(value: object, today: date) -> CardInput:
    """A card: Luhn-valid number, expiry not past, CVC checked for shape and dropped."""
    p = "payment_method[card]"
    card = require_object(value, p)
    reject_unknown(card, {"number", "exp_month", "exp_year", "cvc"}, p)
    number = card.get("number")
    if number is None:
        raise ValidationError(
            f"{p}[number]", "Missing required param: card number.", "parameter_missing"
        )
    try:
        pan = cards.normalize_pan(number)
    except ValueError:
        pan = None
    if not pan or not cards.luhn_valid(pan):
        raise ValidationError(f"{p}[number]", "Your card number is invalid.", "invalid_number")
    month, year = card.get("exp_month"), card.get("exp_year")
    if not is_amount(month) or not 1 <= month <= 12:
        raise ValidationError(
            f"{p}[exp_month]", "Your card's expiration month is invalid.", "invalid_expiry_month"
        )
    if not is_amount(year) or not 1000 <= year <= 9999:
        raise ValidationError(
            f"{p}[exp_year]",
            "Your card's expiration year is invalid (4 digits).",
            "invalid_expiry_year",
        )
    if not cards.expiry_valid(month, year, today):
        raise ValidationError(
            f"{p}[exp_year]",
            "Your card's expiration date is in the past (or over 50 years ahead).",
            "invalid_expiry_year",
        )
    brand = cards.card_brand(pan)
    cvc = card.get("cvc")
    # The CVC is checked for shape and then dropped: it is never stored.
    if cvc is not None and (not isinstance(cvc, str) or not cards.cvc_valid(cvc, brand)):
        raise ValidationError(f"{p}[cvc]", "Your card's security code is invalid.", "invalid_cvc")
    return CardInput(pan=pan, exp_month=month, exp_year=year, brand=brand, last4=cards.last4(pan))


def bank_account_param(pm: dict) -> BankAccountInput:
    """A bank's name (as BANKS spells them) and an account id there (``acc_`` and hex)."""
    p = "payment_method"
    reject_unknown(pm, {"type", "bank", "account"}, p)
    bank, account = pm.get("bank"), pm.get("account")
    if not isinstance(bank, str) or not BANK_NAME.match(bank):
        raise ValidationError(
            f"{p}[bank]", "`payment_method[bank]` must be a bank name such as bank_a."
        )
    if not isinstance(account, str) or not BANK_ACCOUNT.match(account):
        raise ValidationError(
            f"{p}[account]", "`payment_method[account]` must be a bank account id (acc_...)."
        )
    return BankAccountInput(bank, account)


def payment_method_param(value: object, today: date):
    """(card, wallet_id, bank account) from ``payment_method``: one given, the others None."""
    p = "payment_method"
    if value is None:
        raise ValidationError(p, "Missing required param: payment_method.", "parameter_missing")
    pm = require_object(value, p)
    kind = pm.get("type")
    if kind == "card":
        reject_unknown(pm, {"type", "card"}, p)
        return card_param(pm.get("card"), today), None, None
    if kind == "wallet":
        reject_unknown(pm, {"type", "wallet_id"}, p)
        wallet_id = pm.get("wallet_id")
        if not isinstance(wallet_id, str) or not wallet_id or len(wallet_id) > 40:
            raise ValidationError(f"{p}[wallet_id]", "`wallet_id` must be a wallet id string.")
        return None, wallet_id, None
    if kind == "bank_account":
        return None, None, bank_account_param(pm)
    raise ValidationError(
        f"{p}[type]", "`payment_method[type]` must be `card`, `wallet` or `bank_account`."
    )


def validate_create(body: object, today: date, banks=None) -> CreateIntent:
    """Validate a create-intent body; raise ValidationError on the first problem.

    ``banks``: the bank names a bank_account payment may use (None: any well-formed name).
    """
    body = require_object(body)
    reject_unknown(body, CREATE_FIELDS)
    currency = currency_param(body.get("currency"))
    amount = amount_param(body.get("amount"), currency)
    card, wallet_id, bank_account = payment_method_param(body.get("payment_method"), today)
    capture_method = choice(body, "capture_method", CAPTURE_METHODS, "automatic")
    if bank_account is not None and banks is not None and bank_account.bank not in banks:
        raise ValidationError(
            "payment_method[bank]",
            f"No such bank: {bank_account.bank}. Known: {', '.join(sorted(banks))}.",
            "resource_missing",
        )
    if bank_account is not None and capture_method != "automatic":
        # A bank transfer moves the money when it commits: there is no hold to capture.
        raise ValidationError("capture_method", "Bank account payments are captured automatically.")
    return CreateIntent(
        amount=amount,
        currency=currency,
        capture_method=capture_method,
        bank_account=bank_account,
        priority=choice(body, "priority", PRIORITIES, "standard"),
        card=card,
        wallet_id=wallet_id,
        description=optional_str(body, "description", MAX_DESCRIPTION_LEN),
        metadata=metadata_param(body.get("metadata")),
        customer=optional_str(body, "customer", MAX_ID_LEN),
    )
