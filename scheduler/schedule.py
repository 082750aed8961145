"""The beat schedule (one active beat; see README for the lock)."""

from __future__ import annotations

from shared.config import get_settings

settings = get_settings()

BEAT_SCHEDULE = {
    "redrive-stuck-intents": {
        "task": "clearhouse.scheduler.redrive",
        "schedule": float(settings.redrive_interval_s),
    },
    "expire-holds": {
        "task": "clearhouse.scheduler.expire_holds",
        "schedule": float(settings.hold_expiry_interval_s),
    },
    "prune-idempotency-keys": {
        "task": "clearhouse.scheduler.prune_idempotency_keys",
        "schedule": 3600.0,
    },
}
