"""Queues, routes and steps come from one declaration (workers/topology.py)."""

from __future__ import annotations

import re
from pathlib import Path

from shared.domain.intent import Stage
from shared.services.maintenance import STAGE_STEP
from workers.topology import MAINTENANCE, QUEUES, STEPS, task_routes

ROOT = Path(__file__).resolve().parents[2]


def test_every_task_routes_to_the_queue_its_step_declares():
    from workers import notifications, periodic, pipeline  # noqa: F401  (registers the tasks)
    from workers.celery_app import app

    for step, target in STEPS.items():
        assert target.task in app.tasks, step
    for name in (n for n in app.tasks if n.startswith("clearhouse.")):
        queue = app.amqp.router.route({}, name)["queue"].name
        declared = {s.queue for s in STEPS.values() if s.task == name}
        assert queue in (declared or {MAINTENANCE}), (name, queue)
    assert app.conf.task_routes == task_routes()


def test_every_queue_has_a_worker_in_the_procfile_and_no_worker_invents_one():
    procfile = (ROOT / "deploy/Procfile").read_text()
    consumed = {q for line in re.findall(r" -Q (\S+)", procfile) for q in line.split(",")}
    assert consumed == set(QUEUES)


def test_the_redrive_knows_a_step_for_every_stage_before_authorized():
    assert set(STAGE_STEP) == set(Stage) - {Stage.AUTHORIZED}
    assert set(STAGE_STEP.values()) <= set(STEPS)


def test_the_beat_schedule_names_only_registered_tasks():
    from workers import periodic  # noqa: F401
    from workers.celery_app import app
    from workers.schedule import beat_schedule

    for entry in beat_schedule(app.runtime.settings).values():
        assert entry["task"] in app.tasks
        assert app.amqp.router.route({}, entry["task"])["queue"].name == MAINTENANCE
