"""The views' JSON fits the response models the OpenAPI document is made from."""

from datetime import UTC, date, datetime
from types import SimpleNamespace

import pydantic
import pytest

from intake.schemas import responses as rs
from shared.domain import report_periods
from shared.services import period_reports, views

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def intent_row(**over):
    row = {
        "id": "pi_1",
        "pm_type": "card",
        "card_brand": "visa",
        "card_last4": "4242",
        "card_exp_month": 12,
        "card_exp_year": 2030,
        "card_fingerprint": "fp",
        "wallet_id": None,
        "amount": 1000,
        "amount_capturable": 0,
        "amount_received": 1000,
        "amount_refunded": 0,
        "currency": "USD",
        "status": "succeeded",
        "stage": "authorized",
        "capture_method": "automatic",
        "priority": "instant",
        "description": None,
        "metadata": None,
        "customer": None,
        "fee_amount": 59,
        "risk_score": 10,
        "risk_reasons": [{"code": "card_velocity", "points": 20, "detail": "3 in 60 s"}],
        "risk_level": "normal",
        "failure_code": None,
        "failure_message": None,
        "cancellation_reason": None,
        "settlement_status": "settled",
        "hold_expires_at": None,
        "created_at": NOW,
    }
    return SimpleNamespace(**{**row, **over})


def refund_row():
    return SimpleNamespace(
        id="re_1",
        amount=500,
        currency="USD",
        payment_intent_id="pi_1",
        status="succeeded",
        reason=None,
        fee_refunded=30,
        metadata={"k": "v"},
        created_at=NOW,
    )


def fits(model, data):
    model.model_validate(data, strict=False)


@pytest.mark.parametrize(
    "row",
    [
        intent_row(),
        intent_row(pm_type="wallet", wallet_id="wal_1", fee_amount=None, risk_score=None),
        intent_row(status="processing", stage="received", settlement_status=None),
        intent_row(risk_level=None),  # scored before risk levels were recorded
        intent_row(risk_score=65, risk_level="elevated"),
        intent_row(status="failed", risk_score=100, risk_level="highest", amount_received=0),
    ],
)
def test_intents(row):
    fits(rs.PaymentIntent, views.intent_json(row))


def test_an_elevated_intent_carries_its_review_and_no_other_does():
    elevated = views.intent_json(intent_row(id="pi_abc", risk_score=65, risk_level="elevated"))
    assert elevated["risk"]["level"] == "elevated"
    assert (
        elevated["review"]
        == views.review_json("pi_abc", 65)
        == {
            "id": "prv_abc",
            "object": "review",
            "payment_intent": "pi_abc",
            "opened_reason": "rule",
            "reason": "rule",
            "risk_level": "elevated",
            "risk_score": 65,
            "livemode": False,
        }
    )
    for level in ("normal", "highest", None):
        assert views.intent_json(intent_row(risk_level=level))["review"] is None


def test_refunds_events_deliveries_balance_reports():
    fits(rs.Refund, views.refund_json(refund_row()))
    settlement = SimpleNamespace(
        id="st_1", amount=900, currency="USD", priority="standard", intent_count=2, created_at=NOW
    )
    for kind, obj in (
        ("payment_intent.succeeded", views.intent_json(intent_row())),
        ("refund.succeeded", views.refund_json(refund_row())),
        ("settlement.paid", views.settlement_json(settlement)),
        ("review.opened", views.review_json("pi_1", 65)),
    ):
        event = SimpleNamespace(id="evt_1", type=kind, created_at=NOW, data=obj)
        fits(rs.Event, views.event_json(event))
    delivery = SimpleNamespace(
        id="whd_1",
        event_id="evt_1",
        url="https://example.test/hook",
        status="pending",
        attempts=1,
        last_status_code=500,
        last_error="HTTP 500",
        next_attempt_at=NOW,
        created_at=NOW,
        completed_at=None,
    )
    attempt = SimpleNamespace(
        attempt=1,
        outcome="failed",
        status_code=500,
        latency_ms=12,
        error=None,
        response_body="oops",
        created_at=NOW,
    )
    fits(rs.WebhookDelivery, views.delivery_json(delivery, [attempt]))
    balances = {"USD": {"available": 1, "pending": 2, "held": 3}}
    fits(rs.Balance, views.balance_json(balances))
    report = SimpleNamespace(
        report_date=date(2026, 11, 21),
        currency="USD",
        counts={"succeeded": 3},
        gross=1,
        fees=1,
        refunds=0,
        net=0,
        settled=0,
    )
    fits(rs.DailyReportRow, views.report_row_json(report))


@pytest.mark.parametrize(
    ("period", "model", "row_model"),
    [
        (report_periods.week("2026-W48"), rs.WeeklyReport, rs.WeeklyReportRow),
        (report_periods.month("2026-11"), rs.MonthlyReport, rs.MonthlyReportRow),
    ],
)
def test_period_reports(period, model, row_model):
    runs = [
        report_periods.DayRun(period.first_day, 2, NOW),
        report_periods.DayRun(period.last_day, 0, datetime(2030, 1, 1, tzinfo=UTC)),
    ]
    totals = period_reports.Totals("ETH", {"succeeded": 3}, 10**37, 1, 0, 10**37 - 1, 0)
    report = period_reports.PeriodReport(period, report_periods.coverage(period, runs), [totals])
    body = views.period_report_json(report, "/v1/reports/x")
    fits(model, body)
    # Every member the view gives is one the document states, and no other.
    assert set(body) == set(model.model_fields)
    assert set(body["data"][0]) == set(row_model.model_fields)
    assert body["reconciliation"] == {
        "status": "discrepancies",
        "days_with_discrepancies": [period.first_day.isoformat()],
    }
    assert body["data"][0]["gross"] == 10**37 and body["data"][0]["counts"]["failed"] == 0


def test_the_models_are_closed_to_unknown_event_objects():
    event = {"id": "e", "object": "event", "type": "refund.succeeded", "created": 1}
    with pytest.raises(pydantic.ValidationError):
        rs.Event.model_validate({**event, "data": {"object": {"object": "charge"}}})
