"""Fused stages (shared/domain/fusion.py): which stages one task runs, and where it hands on."""

import pytest

from shared.config import Settings
from shared.domain import fusion

DEFAULT = ("limits", "fraud", "fees")


def test_by_default_limits_fraud_and_fees_run_in_one_task_that_hands_on_to_authorize():
    assert Settings.from_env().fused_stages == DEFAULT
    assert fusion.chain("limits", DEFAULT) == DEFAULT
    assert fusion.then("limits", "fraud", DEFAULT) == "authorize"
    # The lane stays the lane.
    assert fusion.chain("limits_instant", DEFAULT) == DEFAULT
    assert fusion.then("limits_instant", "fraud_instant", DEFAULT) == "authorize_instant"


def test_a_task_of_a_later_fused_stage_runs_the_rest_of_the_run():
    # What the re-drive sends to fraud still goes through fees in the same transaction.
    assert fusion.chain("fraud", DEFAULT) == ("fraud", "fees")
    assert fusion.then("fraud", "fees", DEFAULT) == "authorize"
    assert fusion.chain("fees", DEFAULT) == ("fees",)
    assert fusion.then("fees_instant", "authorize_instant", DEFAULT) == "authorize_instant"


def test_unfused_stages_keep_their_own_step():
    assert fusion.chain("limits", ()) == ("limits",)
    assert fusion.then("limits", "fraud", ()) == "fraud"
    assert fusion.chain("limits", ("fraud", "fees")) == ("limits",)
    assert fusion.then("limits", "fraud", ("fraud", "fees")) == "fraud"
    assert fusion.then("fraud", "fees", ("fraud", "fees")) == "authorize"
    assert fusion.then("authorize", None, DEFAULT) is None


@pytest.mark.parametrize("spec", ["none", "", " none "])
def test_none_turns_fusion_off(monkeypatch, spec):
    monkeypatch.setenv("FUSED_STAGES", spec)
    assert Settings.from_env().fused_stages == ()


@pytest.mark.parametrize("spec", ["limits, fraud", "fraud,fees", "limits,fraud,fees"])
def test_any_consecutive_run_can_be_fused(monkeypatch, spec):
    monkeypatch.setenv("FUSED_STAGES", spec)
    assert Settings.from_env().fused_stages == tuple(s.strip() for s in spec.split(","))


@pytest.mark.parametrize(
    "spec, says",
    [
        ("fees,fraud", "consecutive stages in pipeline order"),
        ("limits,fees", "consecutive stages in pipeline order"),
        ("limits", "two or more"),
        ("fees,authorize", "names authorize"),
        ("limits,frod", "names frod"),
    ],
)
def test_anything_else_is_refused_at_start_naming_the_setting(monkeypatch, spec, says):
    monkeypatch.setenv("FUSED_STAGES", spec)
    with pytest.raises(ValueError, match="FUSED_STAGES") as err:
        Settings.from_env()
    assert says in str(err.value)
