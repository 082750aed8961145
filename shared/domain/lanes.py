"""Lanes: instant intents go through the pipeline apart from the rest.

Each pipeline step (limits, fraud, fees, authorize) has a second, instant
lane: the same stage under another task name, on queues of its own, served by
the instant worker (deploy/Procfile). An instant intent enters that lane at
the relay (or a re-drive) and stays in it, because a stage hands its survivors
to the next step of its own lane. So an economy backlog in the shared queues
never waits in front of an instant payment (DESIGN: priority isolation), and a
batch never mixes lanes (celery-batches gathers by task name).
"""

from __future__ import annotations

INSTANT = "instant"
# The steps that have an instant lane, in pipeline order.
LANED_STEPS = ("limits", "fraud", "fees", "authorize")
SUFFIX = "_instant"


def lane_step(step: str, priority: str) -> str:
    """The step an intent of ``priority`` takes for ``step``: its instant lane's, if any."""
    return step + SUFFIX if priority == INSTANT and step in LANED_STEPS else step


def by_lane(step: str, rows) -> dict[str, list[str]]:
    """(id, priority) rows grouped by the lane step each takes for ``step``, order kept."""
    out: dict[str, list[str]] = {}
    for intent_id, priority in rows:
        out.setdefault(lane_step(step, priority), []).append(intent_id)
    return out
