"""Requests through their models: malformed or refused by a rule, a 400 in the domain's words."""

from datetime import date

import pytest

from intake.errors import ApiError
from intake.schemas import requests as rq
from intake.schemas.fields import IDEMPOTENCY_KEY
from intake.schemas.parse import parse, stripe_param
from shared.domain.validation import ValidationError, validate_create
from shared.services.idempotency import check_key

TODAY = date(2026, 11, 22)
VISA = "4242424242424242"


def body(**over) -> dict:
    card = {"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    return {
        "amount": 1000,
        "currency": "USD",
        "payment_method": {"type": "card", "card": card},
        **over,
    }


def create(data):
    return parse(rq.CreatePaymentIntent, data, lambda b: validate_create(b, TODAY))


def refusal(data) -> tuple[int, str, str, str]:
    with pytest.raises(ApiError) as exc:
        create(data)
    e = exc.value
    return e.status_code, e.api_code, e.param, e.description


def test_a_well_formed_body_becomes_the_domain_value():
    assert create(body(currency="usd", metadata={"k": "v"})).currency == "USD"


@pytest.mark.parametrize(
    ("data", "param", "code", "message"),
    [
        ([], "body", "parameter_invalid", "The request body must be a JSON object."),
        (body(colour="red"), "colour", "parameter_unknown", "Received unknown parameter: colour"),
        (
            body(amount=10.0),
            "amount",
            "parameter_invalid_integer",
            "`amount` must be an integer in the currency's minor unit (not a float or string).",
        ),
        (
            body(metadata={"k" * 41: "v"}),
            "metadata[" + "k" * 40 + "]",
            "parameter_invalid",
            "Metadata keys must be 1 to 40 characters long.",
        ),
        (
            body(payment_method={"type": "card", "card": {"number": "12ab"}}),
            "payment_method[card][number]",
            "invalid_number",
            "Your card number is invalid.",
        ),
    ],
)
def test_malformed_is_400_in_the_domains_words(data, param, code, message):
    assert refusal(data) == (400, code, param, message)


def test_nul_anywhere_is_a_400_naming_the_field():
    assert refusal(body(description="a\x00b")) == (
        400,
        "parameter_invalid",
        "description",
        "`description` must not contain NUL characters.",
    )
    status, code, param, _ = refusal(body(metadata={"k": "\x00"}))
    assert (status, code, param) == (400, "parameter_invalid", "metadata[k]")
    wallet = {"type": "wallet", "wallet_id": "w\x00"}
    assert refusal(body(payment_method=wallet))[2] == "payment_method[wallet_id]"


THIS_YEAR = date.today().year  # the model's window starts at the process's year


@pytest.mark.parametrize(
    ("over", "param", "code"),
    [
        ({"number": "4242424242424241"}, "number", "invalid_number"),  # Luhn
        ({"cvc": "1234"}, "cvc", "invalid_cvc"),  # 4 digits on a visa
    ],
)
def test_well_formed_but_refused_by_a_rule_is_the_domains_error(over, param, code):
    card = {"number": VISA, "exp_month": 12, "exp_year": THIS_YEAR + 1, **over}
    with pytest.raises(ValidationError) as exc:  # answered 400 by intake/errors.py
        create(body(payment_method={"type": "card", "card": card}))
    assert (exc.value.param, exc.value.code) == (f"payment_method[card][{param}]", code)
    with pytest.raises(ValidationError) as exc:
        create(body(amount=10**12))
    assert exc.value.code == "amount_too_large"


def test_expiry_a_month_past_and_a_year_past_are_both_refused():
    card = {"number": VISA, "exp_month": 1, "exp_year": THIS_YEAR}
    later = date(THIS_YEAR, 6, 1)
    with pytest.raises(ValidationError) as exc:
        parse(
            rq.CreatePaymentIntent,
            body(payment_method={"type": "card", "card": card}),
            lambda b: validate_create(b, later),
        )
    assert exc.value.code == "invalid_expiry_year"
    card["exp_year"] = THIS_YEAR - 1
    with pytest.raises(ApiError) as exc:
        create(body(payment_method={"type": "card", "card": card}))
    assert (exc.value.status_code, exc.value.api_code) == (400, "invalid_expiry_year")


def test_stripe_params_drop_the_union_tag():
    assert stripe_param(("payment_method", "card", "card", "number")) == (
        "payment_method[card][number]"
    )
    assert stripe_param(("payment_method", "wallet", "wallet_id")) == "payment_method[wallet_id]"
    assert stripe_param(("metadata", "k")) == "metadata[k]"


def test_idempotency_key_constraints():
    for good in ("k", "order-1001", "a b", "~" * 255):
        assert parse(IDEMPOTENCY_KEY, good, check_key) == good
    for bad, message in (
        ("", "Idempotency-Key must be 1 to 255 characters long."),
        ("k" * 256, "Idempotency-Key must be 1 to 255 characters long."),
        (" k", None),
        ("é", None),
    ):
        with pytest.raises(ApiError) as exc:
            parse(IDEMPOTENCY_KEY, bad, check_key, "Idempotency-Key", "Idempotency-Key")
        assert (exc.value.status_code, exc.value.param) == (400, "Idempotency-Key")
        if message:
            assert exc.value.description == message


@pytest.mark.parametrize(
    ("params", "ok"),
    [
        ({}, True),
        ({"limit": "100", "status": "succeeded", "starting_after": ""}, True),
        ({"limit": "0"}, False),
        ({"limit": "1.0"}, False),
        ({"limit": " 5"}, False),
        ({"status": ""}, False),
        ({"starting_after": "pi_\x00"}, False),
        ({"limit": ["1", "2"]}, False),
        ({"colour": "red"}, False),
    ],
)
def test_list_queries(params, ok):
    from intake.listing import list_query

    def run():
        return parse(rq.IntentQuery, params, lambda p: list_query(p, {"status": ("succeeded",)}))

    if ok:
        run()
    else:
        with pytest.raises(ApiError) as exc:
            run()
        assert exc.value.status_code == 400


def test_report_weeks_and_months():
    from intake.resources.reports import report_month, report_week

    week = parse(rq.WeeklyReportQuery, {"week": "2026-W01"}, report_week)
    assert (week.first_day, week.last_day) == (date(2025, 12, 29), date(2026, 1, 4))
    month = parse(rq.MonthlyReportQuery, {"month": "2024-02"}, report_month)
    assert (month.first_day, month.last_day) == (date(2024, 2, 1), date(2024, 2, 29))
    for model, read, param, bad in (
        (rq.WeeklyReportQuery, report_week, "week", ["2025-W53", "2026-W54", "2026-W1", ""]),
        (rq.MonthlyReportQuery, report_month, "month", ["2026-13", "0000-01", "2026-1", ""]),
    ):
        for raw in bad:
            with pytest.raises(ApiError) as exc:
                parse(model, {param: raw}, read)
            assert exc.value.param == param
        with pytest.raises(ApiError) as exc:
            parse(model, {}, read)
        assert exc.value.api_code == "parameter_missing"
        with pytest.raises(ApiError) as exc:
            parse(model, {param: [raw, raw]}, read)
        assert exc.value.param == param


def test_report_dates():
    from intake.resources.reports import report_date

    assert parse(rq.ReportQuery, {"date": "2026-02-28"}, report_date) == date(2026, 2, 28)
    for bad in ({"date": ""}, {"date": "2026-02-30"}, {}, {"date": "2026-2-1"}):
        with pytest.raises(ApiError) as exc:
            parse(rq.ReportQuery, bad, report_date)
        assert exc.value.param == "date"
