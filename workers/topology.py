"""Where every message goes: the one declaration of queues, routes and steps.

A *step* is what the code asks for (``uow.enqueue("fraud", ids)``); it names
the task that runs it and the queue it waits on. Celery's ``task_routes``,
the worker queue list and the publisher are all derived from ``STEPS``, so a
queue name is written here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.intent import Stage
from shared.domain.lanes import LANED_STEPS, SUFFIX


@dataclass(frozen=True)
class Step:
    task: str
    queue: str


# Beat-driven jobs (re-drive, expiry, windows, reports) run here, off the
# payment queues, so a long report never delays a payment.
MAINTENANCE = "maintenance"

STEPS = {
    # The pipeline: each stage on its own queue, so each can have its own pool.
    "limits": Step("clearhouse.limits", "limits"),
    "fraud": Step("clearhouse.fraud", "fraud"),
    "fees": Step("clearhouse.fees", "fees"),
    "authorize": Step("clearhouse.authorize", "authorize"),
    # Refunds of bank payments: a two-phase commit with the banks, like authorize's.
    "refund_bank": Step("clearhouse.refund_bank", "authorize"),
    "settle_instant": Step("clearhouse.settle_instant", "settlement.instant"),
    # One task settles both windows; each window has its own queue, so a big
    # economy window never waits in front of the standard one.
    "settle_standard": Step("clearhouse.settle_window", "settlement.standard"),
    "settle_economy": Step("clearhouse.settle_window", "settlement.economy"),
    "deliver_webhooks": Step("clearhouse.deliver_webhooks", "notifications"),
    # A window scan that found more than one run lists goes on in another run.
    "scan_standard": Step("clearhouse.scheduler.settle_standard", MAINTENANCE),
    "scan_economy": Step("clearhouse.scheduler.settle_economy", MAINTENANCE),
    # A re-encrypt pass: one batch per run, each run sends the next.
    "reencrypt_card_data": Step("clearhouse.scheduler.reencrypt_card_data", MAINTENANCE),
    # Retention jobs: a full batch sends the next one, each its own transaction.
    "purge_card_data": Step("clearhouse.scheduler.purge_card_data", MAINTENANCE),
    "prune_webhook_attempts": Step("clearhouse.scheduler.prune_webhook_attempts", MAINTENANCE),
    "prune_events": Step("clearhouse.scheduler.prune_events", MAINTENANCE),
    "prune_idempotency_keys": Step("clearhouse.scheduler.prune_idempotency_keys", MAINTENANCE),
    "prune_limit_counters": Step("clearhouse.scheduler.prune_limit_counters", MAINTENANCE),
    "prune_refresh_tokens": Step("clearhouse.scheduler.prune_refresh_tokens", MAINTENANCE),
    # Anchoring right after a daily report sealed a day (beat runs it too).
    "anchor_seals": Step("clearhouse.scheduler.anchor_seals", MAINTENANCE),
}

# The instant lane (shared/domain/lanes.py): each pipeline step again, on
# queues "limits.instant", ... that the instant worker serves.
for _name in LANED_STEPS:
    _base = STEPS[_name]
    STEPS[_name + SUFFIX] = Step(_base.task + SUFFIX, f"{_base.queue}.instant")
# What the instant worker serves: its lane's stages, then instant settlement.
INSTANT_QUEUES = (*(STEPS[n + SUFFIX].queue for n in LANED_STEPS), "settlement.instant")

# The step that takes an intent waiting at each stage (the re-drive uses it).
STAGE_STEP = {
    Stage.RECEIVED: "limits",
    Stage.LIMITS_CHECKED: "fraud",
    Stage.RISK_SCORED: "fees",
    Stage.FEE_COMPUTED: "authorize",
}

QUEUES = tuple(dict.fromkeys([*(s.queue for s in STEPS.values()), MAINTENANCE]))


def task_routes() -> dict[str, dict[str, str]]:
    """Celery's ``task_routes``: each task's default queue (the publisher names it anyway)."""
    routes = {"clearhouse.scheduler.*": {"queue": MAINTENANCE}}
    for step in STEPS.values():
        routes.setdefault(step.task, {"queue": step.queue})
    return routes
