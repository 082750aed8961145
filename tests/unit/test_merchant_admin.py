"""Merchant administration's pure rules, and the suspension list's rereading."""

import logging

import pytest
from sqlalchemy.exc import OperationalError

from shared.db.faults import Outage
from shared.domain import merchant_admin as rules
from shared.domain.validation import ValidationError
from shared.services import revocations
from shared.services.suspensions import SuspensionList


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://hooks.example.com/h", "https://hooks.example.com/h"),
        ("https://hooks.example.com:8443/h?token=abc#x", "https://hooks.example.com:8443/h?***"),
        ("https://user:pw@hooks.example.com/h", "https://user:***@hooks.example.com/h"),
        ("https://tok@hooks.example.com/h", "https://***@hooks.example.com/h"),
        ("http://[::1]:9/h", "http://[::1]:9/h"),
        ("http://host:notaport/h", "<unparsable URL>"),
        (None, None),
    ],
)
def test_a_webhook_url_is_shown_without_what_may_be_a_credential(url, shown):
    assert rules.redact_url(url) == shown


def test_the_checks_word_refusals_and_name_the_param():
    assert rules.threshold(0) == 0 and rules.threshold(100) == 100
    for bad in (-1, 101, "5", True, 5.5):
        with pytest.raises(ValidationError, match="from 0 to 100") as err:
            rules.threshold(bad)
        assert err.value.param == "threshold"
    with pytest.raises(ValidationError, match="Missing required param: threshold"):
        rules.threshold(None)
    assert rules.positive_limit(None, "daily") is None and rules.positive_limit(1, "daily") == 1
    for bad in (0, -5, 1.5, "9", False):
        with pytest.raises(ValidationError, match="positive integer") as err:
            rules.positive_limit(bad, "daily")
        assert err.value.param == "daily"
    assert rules.reason("  ") is None and rules.reason(" late ") == "late"
    with pytest.raises(ValidationError, match="at most 500"):
        rules.reason("x" * 501)
    assert rules.overlap_hours(0) == 0.0 and rules.overlap_hours(None) is None
    with pytest.raises(ValidationError, match="non-negative"):
        rules.overlap_hours(-0.5)
    assert rules.overlap_hours(720) == 720.0  # 30 days at the most
    with pytest.raises(ValidationError, match="at most 720 hours"):
        rules.overlap_hours(1e16)  # a timedelta that large does not exist


def test_the_suspension_list_rereads_when_stale_and_keeps_the_last_one_in_an_outage(monkeypatch):
    monkeypatch.setattr(revocations, "outage", Outage("postgres", logging.getLogger("test")))
    now = [100.0]
    state = {"ids": {"mch_a"}, "error": None, "reads": 0}

    def read():
        state["reads"] += 1
        if state["error"]:
            raise state["error"]
        return frozenset(state["ids"])

    suspended = SuspensionList(read, interval_s=1.0, clock=lambda: now[0])
    assert suspended.is_suspended("mch_a") and not suspended.is_suspended("mch_b")
    state["ids"] = {"mch_b"}
    assert suspended.is_suspended("mch_a") and state["reads"] == 1  # not per request
    now[0] += 1.0
    assert suspended.is_suspended("mch_b") and not suspended.is_suspended("mch_a")
    state["error"] = OperationalError("SELECT", {}, Exception("connection refused"))
    now[0] += 1.0
    assert suspended.is_suspended("mch_b")  # the last good list stays in force
    assert state["reads"] == 3
