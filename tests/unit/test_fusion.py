"""Fused stages (shared/domain/fusion.py): which stages one task runs, and where it hands on."""

import pytest

from shared.config import Settings
from shared.domain import fusion

DEFAULT = ("limits", "fraud", "fees", "authorize")
THREE = ("limits", "fraud", "fees")


def test_by_default_the_whole_pipeline_runs_in_the_first_stages_task():
    assert Settings.from_env().fused_stages == DEFAULT
    assert fusion.chain("limits", DEFAULT) == DEFAULT
    assert fusion.chain("limits_instant", DEFAULT) == DEFAULT
    # Authorize hands on by itself (settlement, its retries in its own lane).
    assert fusion.then("limits", "fraud", DEFAULT) is None
    assert fusion.in_lane("limits_instant", "authorize") == "authorize_instant"
    assert fusion.in_lane("limits", "authorize") == "authorize"


def test_without_authorize_the_run_hands_on_to_authorize_in_its_lane():
    assert fusion.chain("limits", THREE) == THREE
    assert fusion.then("limits", "fraud", THREE) == "authorize"
    assert fusion.then("limits_instant", "fraud_instant", THREE) == "authorize_instant"


def test_a_task_of_a_later_fused_stage_runs_the_rest_of_the_run():
    # What the re-drive sends to fraud still goes through fees in the same transaction.
    assert fusion.chain("fraud", THREE) == ("fraud", "fees")
    assert fusion.then("fraud", "fees", THREE) == "authorize"
    assert fusion.chain("fees", THREE) == ("fees",)
    assert fusion.then("fees_instant", "authorize_instant", THREE) == "authorize_instant"
    assert fusion.chain("fees", DEFAULT) == ("fees", "authorize")
    assert fusion.chain("authorize_instant", DEFAULT) == ("authorize",)


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


@pytest.mark.parametrize(
    "spec", ["limits, fraud", "fraud,fees", "limits,fraud,fees", "fees,authorize"]
)
def test_any_consecutive_run_can_be_fused(monkeypatch, spec):
    monkeypatch.setenv("FUSED_STAGES", spec)
    assert Settings.from_env().fused_stages == tuple(s.strip() for s in spec.split(","))


@pytest.mark.parametrize(
    "spec, says",
    [
        ("fees,fraud", "consecutive stages in pipeline order"),
        ("limits,fees", "consecutive stages in pipeline order"),
        ("limits", "two or more"),
        ("authorize,limits", "consecutive stages in pipeline order"),
        ("settle,limits", "names settle"),
        ("limits,frod", "names frod"),
    ],
)
def test_anything_else_is_refused_at_start_naming_the_setting(monkeypatch, spec, says):
    monkeypatch.setenv("FUSED_STAGES", spec)
    with pytest.raises(ValueError, match="FUSED_STAGES") as err:
        Settings.from_env()
    assert says in str(err.value)


class _Task:
    """What run_fused reads of its task: the step, the settings, the runtime, put_back."""

    def __init__(self, step, fused):
        from types import SimpleNamespace

        self.step, self.put = step, []
        self.settings = SimpleNamespace(
            fused_stages=fused, hold_ttl_s=60, auth_max_attempts=3, auth_retry_base_s=0.5
        )
        self.runtime = SimpleNamespace(uow=None, acquirer=None, vault=None, banks=None)
        self.then = "fraud"

    def _new_uow(self):
        raise AssertionError("run_isolated is replaced in these tests")

    def put_back(self, ids, exc, step=None):
        self.put.append((ids, type(exc).__name__, step))


@pytest.mark.parametrize(
    "step, lane", [("limits", "authorize"), ("limits_instant", "authorize_instant")]
)
def test_a_transient_error_in_fused_authorize_retries_only_authorize_in_its_lane(
    monkeypatch, step, lane
):
    """The stages ahead committed: putting the ids back on limits would strand them."""
    import psycopg2

    import workers.pipeline as pipeline
    from shared.services.stages.common import StageResult

    def committed(new_uow, body, ids, then):  # each unit fails pi_1, advances the rest
        return StageResult(
            advanced=[i for i in ids if i != "pi_1"], failed=[i for i in ids if i == "pi_1"]
        )

    def broken(*args, **kwargs):
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(pipeline, "run_isolated", committed)
    monkeypatch.setattr(pipeline.authorization, "authorize_batch", broken)
    task = _Task(step, DEFAULT)
    result = pipeline.run_fused(task, ["pi_1", "pi_2"])
    assert task.put == [(["pi_2"], "OperationalError", lane)]
    assert result.failed == ["pi_1"]


def test_limits_is_a_unit_of_work_of_its_own_and_the_stages_after_it_share_one():
    assert fusion.units(("limits", "fraud", "fees")) == (("limits",), ("fraud", "fees"))
    assert fusion.units(("limits", "fraud")) == (("limits",), ("fraud",))
    assert fusion.units(("fraud", "fees")) == (("fraud", "fees"),)
    assert fusion.units(("limits",)) == (("limits",),)
    assert fusion.units(()) == ()


@pytest.mark.parametrize("step, lane", [("limits", "fraud"), ("limits_instant", "fraud_instant")])
def test_limits_commits_before_fraud_and_a_transient_error_after_it_retries_from_fraud(
    monkeypatch, step, lane
):
    """Limits' counters are released at its own commit; if fraud and fees then fail
    transiently, the ids go back on fraud (limits would find nothing left to do)."""
    import psycopg2

    import workers.pipeline as pipeline
    from shared.services.stages.common import StageResult

    units, ran = [], []

    def body_of(name):
        def body(task, uow, ids):
            ran.append(name)
            return StageResult(advanced=ids)

        return body

    def one_unit(new_uow, body, ids, then):
        ran.clear()
        body(None, ids)
        units.append((tuple(ran), list(ids), then))
        if len(units) == 2:
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return StageResult(advanced=["pi_2"], failed=["pi_1"])

    monkeypatch.setattr(pipeline, "BODIES", {n: body_of(n) for n in ("limits", "fraud", "fees")})
    monkeypatch.setattr(pipeline, "run_isolated", one_unit)
    task = _Task(step, DEFAULT)
    result = pipeline.run_fused(task, ["pi_1", "pi_2"])
    assert units == [(("limits",), ["pi_1", "pi_2"], None), (("fraud", "fees"), ["pi_2"], None)]
    assert task.put == [(["pi_2"], "OperationalError", lane)]
    assert result.failed == ["pi_1"]
