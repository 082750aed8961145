from datetime import date

import pytest

from shared.domain.validation import ValidationError, validate_create

TODAY = date(2026, 11, 22)


def body(**over):
    b = {
        "amount": 1000,
        "currency": "USD",
        "payment_method": {
            "type": "card",
            "card": {
                "number": "4242 4242 4242 4242",
                "exp_month": 12,
                "exp_year": 2030,
                "cvc": "123",
            },
        },
    }
    b.update(over)
    return b


def error(b) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        validate_create(b, TODAY)
    return exc.value


def test_valid_card_body():
    req = validate_create(body(priority="instant", metadata={"order": "42"}), TODAY)
    assert (req.amount, req.currency, req.priority, req.capture_method) == (
        1000,
        "USD",
        "instant",
        "automatic",
    )
    assert req.card.last4 == "4242" and req.card.brand == "visa"


@pytest.mark.parametrize(
    ("over", "param", "code"),
    [
        ({"amount": 10.5}, "amount", "parameter_invalid_integer"),
        ({"amount": "1000"}, "amount", "parameter_invalid_integer"),
        ({"amount": True}, "amount", "parameter_invalid_integer"),
        ({"amount": 0}, "amount", "amount_too_small"),
        ({"amount": 10**12}, "amount", "amount_too_large"),
        ({"currency": "XYZ"}, "currency", "invalid_currency"),
        ({"priority": "urgent"}, "priority", "parameter_invalid"),
        ({"capture_method": "later"}, "capture_method", "parameter_invalid"),
        ({"surprise": 1}, "surprise", "parameter_unknown"),
        ({"metadata": {"k" * 41: "v"}}, "metadata[" + "k" * 40 + "]", "parameter_invalid"),
        ({"metadata": {"k": "v" * 501}}, "metadata[k]", "parameter_invalid"),
        ({"metadata": {str(i): "v" for i in range(51)}}, "metadata", "parameter_invalid"),
        ({"metadata": {"k": 1}}, "metadata[k]", "parameter_invalid"),
    ],
)
def test_invalid_fields_name_their_param(over, param, code):
    e = error(body(**over))
    assert (e.param, e.code) == (param, code)


def test_missing_amount():
    b = body()
    del b["amount"]
    assert (error(b).param, error(b).code) == ("amount", "parameter_missing")


@pytest.mark.parametrize(
    ("card", "param", "code"),
    [
        ({"number": "4242424242424241"}, "number", "invalid_number"),
        ({"number": 4242424242424242}, "number", "invalid_number"),
        ({"exp_month": 13}, "exp_month", "invalid_expiry_month"),
        ({"exp_year": 2025}, "exp_year", "invalid_expiry_year"),
        ({"exp_year": 30}, "exp_year", "invalid_expiry_year"),
        ({"cvc": "12"}, "cvc", "invalid_cvc"),
        ({"pin": "1234"}, "pin", "parameter_unknown"),
    ],
)
def test_invalid_card_fields(card, param, code):
    b = body()
    b["payment_method"]["card"].update(card)
    e = error(b)
    assert (e.param, e.code) == (f"payment_method[card][{param}]", code)


def test_eth_amounts_beyond_bigint_are_fine():
    req = validate_create(body(currency="ETH", amount=5 * 10**18 * 100), TODAY)
    assert req.amount == 5 * 10**20


def test_jpy_has_no_minor_unit_but_integer_amounts():
    assert validate_create(body(currency="jpy", amount=500), TODAY).currency == "JPY"


def test_wallet_payment_method():
    req = validate_create(body(payment_method={"type": "wallet", "wallet_id": "wal_1"}), TODAY)
    assert req.wallet_id == "wal_1" and req.card is None


def test_body_must_be_an_object():
    assert error([1, 2]).param == "body"
