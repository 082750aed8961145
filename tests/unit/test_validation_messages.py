"""Every refusal of a create-intent body: its param, code and the message merchants read.

The message is the problem+json ``detail`` a developer sees, so it is part of
the API: each branch of ``shared.domain.validation`` is pinned here, with the
bounds just inside and just outside each limit.
"""

from __future__ import annotations

from datetime import date

import pytest

from shared.domain.validation import (
    MAX_DESCRIPTION_LEN,
    MAX_ID_LEN,
    BankAccountInput,
    ValidationError,
    amount_param,
    card_param,
    choice,
    currency_param,
    metadata_param,
    optional_str,
    payment_method_param,
    reject_unknown,
    require_object,
    validate_create,
)
from shared.money import CURRENCIES

TODAY = date(2026, 11, 22)
VISA = "4242424242424242"
PM = "payment_method"
CARD = "payment_method[card]"


def card(**over) -> dict:
    return {"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": "123", **over}


def body(**over) -> dict:
    return {"amount": 1000, "currency": "USD", PM: {"type": "card", "card": card()}, **over}


def refusal(fn, *args) -> tuple[str, str, str]:
    with pytest.raises(ValidationError) as exc:
        fn(*args)
    e = exc.value
    assert str(e) == e.message  # the exception's text is the message
    return e.param, e.code, e.message


def test_validation_error_carries_param_message_and_default_code():
    e = ValidationError("amount", "Too big.")
    assert (e.param, e.message, e.code, str(e)) == (
        "amount",
        "Too big.",
        "parameter_invalid",
        "Too big.",
    )
    assert isinstance(e, ValueError)


def test_unknown_field_names_its_full_param():
    assert refusal(reject_unknown, {"a": 1, "zz": 2}, {"a"}) == (
        "zz",
        "parameter_unknown",
        "Received unknown parameter: zz",
    )
    assert refusal(reject_unknown, {"pin": 1}, {"number"}, CARD) == (
        f"{CARD}[pin]",
        "parameter_unknown",
        f"Received unknown parameter: {CARD}[pin]",
    )
    reject_unknown({"a": 1}, {"a", "b"})  # known fields pass


def test_require_object():
    assert refusal(require_object, [1]) == (
        "body",
        "parameter_invalid",
        "The request body must be a JSON object.",
    )
    assert refusal(require_object, "x", PM) == (
        PM,
        "parameter_invalid",
        "`payment_method` must be a JSON object.",
    )
    d = {"k": 1}
    assert require_object(d) is d


@pytest.mark.parametrize(
    ("value", "code", "message"),
    [
        (None, "parameter_missing", "Missing required param: amount."),
        (
            1.0,
            "parameter_invalid_integer",
            "`amount` must be an integer in the currency's minor unit (not a float or string).",
        ),
        (0, "amount_too_small", "`amount` must be at least 1."),
        (-5, "amount_too_small", "`amount` must be at least 1."),
        (
            CURRENCIES["USD"].max_minor + 1,
            "amount_too_large",
            f"`amount` must be at most {CURRENCIES['USD'].max_minor} for USD.",
        ),
    ],
)
def test_amount_refusals(value, code, message):
    assert refusal(amount_param, value, "USD") == ("amount", code, message)


def test_amount_bounds_are_inclusive_and_the_param_is_named():
    top = CURRENCIES["JPY"].max_minor
    assert amount_param(1, "JPY") == 1
    assert amount_param(top, "JPY") == top
    assert refusal(amount_param, 0, "USD", "amount_to_capture") == (
        "amount_to_capture",
        "amount_too_small",
        "`amount_to_capture` must be at least 1.",
    )


def test_currency_refusals():
    assert refusal(currency_param, None) == (
        "currency",
        "parameter_missing",
        "Missing required param: currency.",
    )
    known = ", ".join(CURRENCIES)
    for bad in ("XYZ", 5, ""):
        assert refusal(currency_param, bad) == (
            "currency",
            "invalid_currency",
            f"Invalid currency: {bad!r}. Supported: {known}.",
        )
    assert currency_param("eurc") == "EURC"


def test_choice():
    assert choice({}, "priority", ("a", "b"), "b") == "b"
    assert choice({"priority": "a"}, "priority", ("a", "b"), "b") == "a"
    assert refusal(choice, {"priority": "c"}, "priority", ("a", "b"), "b") == (
        "priority",
        "parameter_invalid",
        "`priority` must be one of: a, b.",
    )


def test_optional_str_bounds():
    assert optional_str({}, "description", 3) is None
    assert optional_str({"description": None}, "description", 3) is None
    assert optional_str({"description": "abc"}, "description", 3) == "abc"
    message = "`description` must be a string of at most 3 characters."
    for bad in ("abcd", 12, ["x"]):
        assert refusal(optional_str, {"description": bad}, "description", 3) == (
            "description",
            "parameter_invalid",
            message,
        )


def test_description_and_customer_are_read_with_their_own_limits():
    req = validate_create(
        body(description="d" * MAX_DESCRIPTION_LEN, customer="c" * MAX_ID_LEN), TODAY
    )
    assert req.description == "d" * MAX_DESCRIPTION_LEN and req.customer == "c" * MAX_ID_LEN
    assert refusal(validate_create, body(description="d" * (MAX_DESCRIPTION_LEN + 1)), TODAY)[
        0
    ] == ("description")
    assert refusal(validate_create, body(customer="c" * (MAX_ID_LEN + 1)), TODAY) == (
        "customer",
        "parameter_invalid",
        f"`customer` must be a string of at most {MAX_ID_LEN} characters.",
    )
    defaults = validate_create(body(), TODAY)
    assert (defaults.description, defaults.customer, defaults.metadata) == (None, None, {})


def test_metadata_refusals_and_bounds():
    assert metadata_param(None) == {}
    full = {f"k{i}": "v" * 500 for i in range(50)}
    assert metadata_param(full) == full and metadata_param(full) is not full
    assert metadata_param({"k" * 40: ""}) == {"k" * 40: ""}
    assert refusal(metadata_param, ["x"]) == (
        "metadata",
        "parameter_invalid",
        "`metadata` must be an object of string values.",
    )
    assert refusal(metadata_param, {f"k{i}": "v" for i in range(51)}) == (
        "metadata",
        "parameter_invalid",
        "`metadata` can have at most 50 keys.",
    )
    key_message = "Metadata keys must be 1 to 40 characters long."
    assert refusal(metadata_param, {"": "v"}) == ("metadata[]", "parameter_invalid", key_message)
    assert refusal(metadata_param, {"k" * 41: "v"}) == (
        "metadata[" + "k" * 40 + "]",
        "parameter_invalid",
        key_message,
    )
    value_message = "Metadata values must be strings of at most 500 characters."
    for bad in ("v" * 501, 1, None):
        assert refusal(metadata_param, {"k": bad}) == (
            "metadata[k]",
            "parameter_invalid",
            value_message,
        )


CARD_REFUSALS = [
    ({"number": None}, "number", "parameter_missing", "Missing required param: card number."),
    ({"number": "4242424242424241"}, "number", "invalid_number", "Your card number is invalid."),
    ({"number": "4242-4242-abcd"}, "number", "invalid_number", "Your card number is invalid."),
    ({"number": 4242424242424242}, "number", "invalid_number", "Your card number is invalid."),
    (
        {"exp_month": 0},
        "exp_month",
        "invalid_expiry_month",
        "Your card's expiration month is invalid.",
    ),
    (
        {"exp_month": 13},
        "exp_month",
        "invalid_expiry_month",
        "Your card's expiration month is invalid.",
    ),
    (
        {"exp_month": "12"},
        "exp_month",
        "invalid_expiry_month",
        "Your card's expiration month is invalid.",
    ),
    (
        {"exp_year": 999},
        "exp_year",
        "invalid_expiry_year",
        "Your card's expiration year is invalid (4 digits).",
    ),
    (
        {"exp_year": 10_000},
        "exp_year",
        "invalid_expiry_year",
        "Your card's expiration year is invalid (4 digits).",
    ),
    (
        {"exp_year": "2030"},
        "exp_year",
        "invalid_expiry_year",
        "Your card's expiration year is invalid (4 digits).",
    ),
    (
        {"exp_year": 2025},
        "exp_year",
        "invalid_expiry_year",
        "Your card's expiration date is in the past (or over 50 years ahead).",
    ),
    # Four digits, so the shape passes; the date is what fails.
    (
        {"exp_year": 1000},
        "exp_year",
        "invalid_expiry_year",
        "Your card's expiration date is in the past (or over 50 years ahead).",
    ),
    (
        {"exp_year": 9999},
        "exp_year",
        "invalid_expiry_year",
        "Your card's expiration date is in the past (or over 50 years ahead).",
    ),
    (
        {"exp_year": 2077},
        "exp_year",
        "invalid_expiry_year",
        "Your card's expiration date is in the past (or over 50 years ahead).",
    ),
    ({"cvc": "12"}, "cvc", "invalid_cvc", "Your card's security code is invalid."),
    ({"cvc": 123}, "cvc", "invalid_cvc", "Your card's security code is invalid."),
    ({"cvc": "1234"}, "cvc", "invalid_cvc", "Your card's security code is invalid."),
]


@pytest.mark.parametrize(("over", "field", "code", "message"), CARD_REFUSALS)
def test_card_refusals(over, field, code, message):
    fields = card(**over)
    if over.get("number", VISA) is None:
        del fields["number"]
    assert refusal(card_param, fields, TODAY) == (f"{CARD}[{field}]", code, message)


def test_card_must_be_an_object():
    assert refusal(card_param, None, TODAY) == (
        CARD,
        "parameter_invalid",
        f"`{CARD}` must be a JSON object.",
    )


def test_card_bounds_accepted_and_the_card_returned():
    c = card_param(card(number="4242 4242 4242 4242", exp_month=1, exp_year=2027), TODAY)
    assert (c.pan, c.exp_month, c.exp_year, c.brand, c.last4) == (VISA, 1, 2027, "visa", "4242")
    assert card_param(card(exp_month=11, exp_year=2026), TODAY).exp_month == 11  # this month
    assert card_param(card(exp_year=2076), TODAY).exp_year == 2076  # 50 years ahead
    # Amex: a four-digit CVC; the CVC is optional and never kept.
    amex = card_param(card(number="378282246310005", cvc="1234"), TODAY)
    assert amex.brand == "amex" and not hasattr(amex, "cvc")
    assert card_param({"number": VISA, "exp_month": 12, "exp_year": 2030}, TODAY).last4 == "4242"


def test_payment_method_refusals():
    assert refusal(payment_method_param, None, TODAY) == (
        PM,
        "parameter_missing",
        "Missing required param: payment_method.",
    )
    assert refusal(payment_method_param, "card", TODAY) == (
        PM,
        "parameter_invalid",
        "`payment_method` must be a JSON object.",
    )
    type_message = "`payment_method[type]` must be `card`, `wallet` or `bank_account`."
    for pm in ({}, {"type": "bank"}, {"type": None}):
        assert refusal(payment_method_param, pm, TODAY) == (
            f"{PM}[type]",
            "parameter_invalid",
            type_message,
        )
    assert refusal(payment_method_param, {"type": "card", "card": card(), "x": 1}, TODAY) == (
        f"{PM}[x]",
        "parameter_unknown",
        f"Received unknown parameter: {PM}[x]",
    )
    assert refusal(payment_method_param, {"type": "wallet", "wallet_id": "w", "card": 1}, TODAY)[
        :2
    ] == (f"{PM}[card]", "parameter_unknown")
    wallet_message = "`wallet_id` must be a wallet id string."
    for wallet_id in (None, "", 5, "w" * 41):
        assert refusal(payment_method_param, {"type": "wallet", "wallet_id": wallet_id}, TODAY) == (
            f"{PM}[wallet_id]",
            "parameter_invalid",
            wallet_message,
        )


def test_payment_method_results():
    assert payment_method_param({"type": "wallet", "wallet_id": "w" * 40}, TODAY) == (
        None,
        "w" * 40,
        None,
    )
    c, wallet, bank = payment_method_param({"type": "card", "card": card()}, TODAY)
    assert wallet is None and bank is None and c.pan == VISA


def test_validate_create_checks_in_order_and_reads_every_field():
    # The body first, then unknown fields, then currency before amount.
    assert refusal(validate_create, [], TODAY)[0] == "body"
    assert refusal(validate_create, {"amount": 0, "currency": "XYZ", "x": 1}, TODAY)[0] == "x"
    assert refusal(validate_create, {"amount": 0, "currency": "XYZ"}, TODAY)[0] == "currency"
    req = validate_create(
        body(
            currency="gbp",
            capture_method="manual",
            priority="economy",
            description="order 7",
            metadata={"order": "7"},
            customer="cus_1",
        ),
        TODAY,
    )
    assert (req.amount, req.currency, req.capture_method, req.priority) == (
        1000,
        "GBP",
        "manual",
        "economy",
    )
    assert (req.description, req.metadata, req.customer, req.wallet_id) == (
        "order 7",
        {"order": "7"},
        "cus_1",
        None,
    )
    assert req.card.exp_month == 12 and req.card.exp_year == 2030


def test_bank_account_payment_methods():
    pm = {"type": "bank_account", "bank": "bank_a", "account": "acc_0123abcd"}
    req = validate_create(body(**{PM: pm}), TODAY)
    assert (req.card, req.wallet_id, req.bank_account) == (
        None,
        None,
        BankAccountInput("bank_a", "acc_0123abcd"),
    )
    bank_message = "`payment_method[bank]` must be a bank name such as bank_a."
    for bank in (None, "", 5, "Bank_A", "bank-a", "b" * 33, "1bank"):
        assert refusal(payment_method_param, {**pm, "bank": bank}, TODAY) == (
            f"{PM}[bank]",
            "parameter_invalid",
            bank_message,
        )
    account_message = "`payment_method[account]` must be a bank account id (acc_...)."
    for account in (None, "", 7, "acc_", "ACC_12", "acc_xyz", "acc_" + "a" * 61, "acc_1 "):
        assert refusal(payment_method_param, {**pm, "account": account}, TODAY) == (
            f"{PM}[account]",
            "parameter_invalid",
            account_message,
        )
    assert refusal(payment_method_param, {**pm, "card": card()}, TODAY)[:2] == (
        f"{PM}[card]",
        "parameter_unknown",
    )
    # A bank transfer moves the money when it commits: no hold, no manual capture.
    assert refusal(validate_create, body(**{PM: pm, "capture_method": "manual"}), TODAY) == (
        "capture_method",
        "parameter_invalid",
        "Bank account payments are captured automatically.",
    )


def test_a_bank_account_must_name_a_known_bank_when_they_are_given():
    pm = {"type": "bank_account", "bank": "bank_c", "account": "acc_01"}
    assert refusal(validate_create, body(**{PM: pm}), TODAY, frozenset({"bank_a", "bank_b"})) == (
        f"{PM}[bank]",
        "resource_missing",
        "No such bank: bank_c. Known: bank_a, bank_b.",
    )
    known = validate_create(body(**{PM: {**pm, "bank": "bank_b"}}), TODAY, {"bank_a", "bank_b"})
    assert known.bank_account.bank == "bank_b"
