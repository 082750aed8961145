"""The instant lane's step names (shared/domain/lanes.py) and their queues."""

from shared.domain.lanes import by_lane, lane_step
from workers.topology import INSTANT_QUEUES, QUEUES, STEPS


def test_instant_intents_take_the_lane_of_each_pipeline_step_and_nothing_else():
    assert lane_step("limits", "instant") == "limits_instant"
    assert lane_step("limits", "economy") == lane_step("limits", "standard") == "limits"
    assert lane_step("settle_instant", "instant") == "settle_instant"  # settlement has its own
    rows = [("pi_1", "economy"), ("pi_2", "instant"), ("pi_3", "standard"), ("pi_4", "instant")]
    assert by_lane("limits", rows) == {
        "limits": ["pi_1", "pi_3"],
        "limits_instant": ["pi_2", "pi_4"],
    }


def test_each_lane_step_has_a_task_and_queue_of_its_own_served_by_the_instant_worker():
    for name in ("limits", "fraud", "fees", "authorize"):
        shared, lane = STEPS[name], STEPS[name + "_instant"]
        assert lane.task == shared.task + "_instant" and lane.queue == shared.queue + ".instant"
        assert lane.queue in INSTANT_QUEUES and lane.queue in QUEUES
        assert shared.queue not in INSTANT_QUEUES
    assert INSTANT_QUEUES[-1] == "settlement.instant"


def test_the_lane_tasks_are_registered_with_their_lanes_next_step():
    import workers.pipeline  # noqa: F401 (registers the tasks)
    from workers.celery_app import app

    for name, then in (("limits", "fraud"), ("fraud", "fees"), ("fees", "authorize")):
        shared, lane = app.tasks[STEPS[name].task], app.tasks[STEPS[name + "_instant"].task]
        assert (shared.step, shared.then) == (name, then)
        assert (lane.step, lane.then) == (name + "_instant", then + "_instant")
    assert app.tasks[STEPS["authorize_instant"].task].step == "authorize_instant"
