"""The beat schedule. Exactly one beat is active: RedBeat holds a lock in Redis."""

from __future__ import annotations

from celery.schedules import crontab

from shared.config import Settings


def beat_schedule(settings: Settings) -> dict[str, dict]:
    """Every periodic job, its task and how often it runs."""
    economy = settings.settlement_economy_interval_s
    retention = settings.retention_interval_s
    anchoring = (
        {
            # Until every seal's anchor is mined (off without ANCHOR_RPC_URL).
            "anchor-seals": {
                "task": "clearhouse.scheduler.anchor_seals",
                "schedule": settings.anchor_interval_s,
            }
        }
        if settings.anchor_rpc_url
        else {}
    )
    return anchoring | {
        "redrive-stuck-intents": {
            "task": "clearhouse.scheduler.redrive",
            "schedule": float(settings.redrive_interval_s),
        },
        "resolve-bank-transactions": {
            "task": "clearhouse.scheduler.resolve_bank_transactions",
            "schedule": settings.bank_resolve_interval_s,
        },
        "expire-holds": {
            "task": "clearhouse.scheduler.expire_holds",
            "schedule": float(settings.hold_expiry_interval_s),
        },
        "prune-idempotency-keys": {
            "task": "clearhouse.scheduler.prune_idempotency_keys",
            "schedule": retention,
        },
        "purge-card-data": {
            "task": "clearhouse.scheduler.purge_card_data",
            "schedule": retention,
        },
        "prune-webhook-attempts": {
            "task": "clearhouse.scheduler.prune_webhook_attempts",
            "schedule": retention,
        },
        "prune-events": {
            "task": "clearhouse.scheduler.prune_events",
            "schedule": retention,
        },
        "prune-limit-counters": {
            "task": "clearhouse.scheduler.prune_limit_counters",
            "schedule": retention,
        },
        "prune-refresh-tokens": {
            "task": "clearhouse.scheduler.prune_refresh_tokens",
            "schedule": retention,
        },
        "dispatch-due-webhooks": {
            "task": "clearhouse.scheduler.dispatch_webhooks",
            "schedule": settings.webhook_dispatch_interval_s,
        },
        "settle-standard-window": {
            "task": "clearhouse.scheduler.settle_standard",
            "schedule": float(settings.settlement_standard_interval_s),
        },
        "settle-economy-window": {
            "task": "clearhouse.scheduler.settle_economy",
            "schedule": float(economy) if economy else crontab(hour=0, minute=10),
        },
        "reencrypt-card-data": {
            "task": "clearhouse.scheduler.reencrypt_card_data",
            "schedule": settings.reencrypt_interval_s,
        },
        "daily-report": {
            "task": "clearhouse.scheduler.daily_report",
            "schedule": crontab(hour=0, minute=5),
        },
    }
