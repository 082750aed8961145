"""Webhook endpoints' pure rules: what a create or an update may say, who receives what."""

import pytest

from shared.domain import webhook_endpoints as E
from shared.domain.validation import ValidationError

TYPES = ("payment_intent.succeeded", "refund.succeeded", "settlement.paid")
URL = "https://example.com/hooks"


def test_a_create_needs_a_url_and_event_types_and_fills_the_rest():
    made = E.validate_create({"url": URL, "enabled_events": ["refund.succeeded"]}, TYPES)
    assert made == E.EndpointChange(URL, ("refund.succeeded",), None, {}, False)
    full = E.validate_create(
        {
            "url": URL,
            "enabled_events": ["settlement.paid", "refund.succeeded", "settlement.paid"],
            "description": "books",
            "metadata": {"team": "ops"},
            "disabled": True,
        },
        TYPES,
    )
    # Repeats dropped, the order given kept.
    assert full == E.EndpointChange(
        URL, ("settlement.paid", "refund.succeeded"), "books", {"team": "ops"}, True
    )
    assert E.validate_create({"url": URL, "enabled_events": ["*"]}, TYPES).enabled_events == ("*",)


def test_an_update_changes_only_what_it_names():
    assert E.validate_update({}, TYPES) == E.EndpointChange()
    assert E.validate_update({"disabled": False}, TYPES) == E.EndpointChange(disabled=False)
    assert E.validate_update({"description": ""}, TYPES).description == ""  # clears it


@pytest.mark.parametrize(
    ("body", "param", "code", "says"),
    [
        ({"enabled_events": ["*"]}, "url", "parameter_missing", "Missing required param: url"),
        ({"url": URL}, "enabled_events", "parameter_missing", "Missing required param"),
        ({"url": "", "enabled_events": ["*"]}, "url", "parameter_invalid", "must be a URL"),
        ({"url": 5, "enabled_events": ["*"]}, "url", "parameter_invalid", "must be a URL"),
        ({"url": URL, "enabled_events": []}, "enabled_events", "parameter_invalid", "non-empty"),
        ({"url": URL, "enabled_events": "*"}, "enabled_events", "parameter_invalid", "list"),
        (
            {"url": URL, "enabled_events": ["refund.succeeded", "charge.failed"]},
            "enabled_events[1]",
            "parameter_invalid",
            "Unknown event type 'charge.failed'",
        ),
        (
            {"url": URL, "enabled_events": [{"a": 1}]},
            "enabled_events[0]",
            "parameter_invalid",
            "Unknown event type",
        ),
        (
            {"url": URL, "enabled_events": ["*", "refund.succeeded"]},
            "enabled_events",
            "parameter_invalid",
            "not both",
        ),
        (
            {"url": URL, "enabled_events": ["*"], "disabled": "yes"},
            "disabled",
            "parameter_invalid",
            "true or false",
        ),
        (
            {"url": URL, "enabled_events": ["*"], "description": "x" * 1001},
            "description",
            "parameter_invalid",
            "at most 1000",
        ),
        (
            {"url": URL, "enabled_events": ["*"], "metadata": {"k": 1}},
            "metadata[k]",
            "parameter_invalid",
            "strings",
        ),
        ({"url": URL, "enabled_events": ["*"], "secret": "x"}, "secret", "parameter_unknown", ""),
    ],
)
def test_a_bad_create_names_its_param(body, param, code, says):
    with pytest.raises(ValidationError) as refused:
        E.validate_create(body, TYPES)
    assert (refused.value.param, refused.value.code) == (param, code)
    assert says in refused.value.message


def test_a_bad_update_is_refused_as_a_create_is():
    with pytest.raises(ValidationError, match="not both"):
        E.validate_update({"enabled_events": ["refund.succeeded", "*"]}, TYPES)
    with pytest.raises(ValidationError) as refused:
        E.validate_update({"status": "disabled"}, TYPES)  # the switch is `disabled`
    assert refused.value.code == "parameter_unknown"


def test_who_receives_what():
    assert E.receives(["*"], "settlement.paid")
    assert E.receives(["refund.succeeded", "settlement.paid"], "settlement.paid")
    assert not E.receives(["refund.succeeded"], "settlement.paid")
