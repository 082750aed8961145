"""Enqueue pipeline steps by name (callers never import task modules)."""

from __future__ import annotations

from workers.celery_app import app, settings

# step -> (task name, queue)
STEPS = {
    "limits": ("clearhouse.limits", "limits"),
    "fraud": ("clearhouse.fraud", "fraud"),
    "fees": ("clearhouse.fees", "fees"),
    "authorize": ("clearhouse.authorize", "authorize"),
    "settle_instant": ("clearhouse.settle_instant", "settlement.instant"),
    "deliver_webhooks": ("clearhouse.deliver_webhooks", "notifications"),
}
STAGE_STEP = {
    "received": "limits",
    "limits_checked": "fraud",
    "risk_scored": "fees",
    "fee_computed": "authorize",
}


def dispatch(step: str, ids: list[str], countdown: float | None = None) -> None:
    """Send ``ids`` to ``step`` in messages of at most ``batch_max`` ids."""
    name, queue = STEPS[step]
    size = settings.batch_max
    for start in range(0, len(ids), size):
        app.send_task(name, args=[ids[start : start + size]], queue=queue, countdown=countdown)
