"""Retention: what is no longer needed is removed, one short batch per transaction.

Each job takes one batch of at most ``limit`` rows (beat's task sends the next
batch while a batch comes back full), locks it ``FOR UPDATE SKIP LOCKED`` so
the pipeline and the API never wait on it (a row someone holds is taken by a
later batch), and finds its candidates through an index of its own (migration
0018), never a sequential scan:

- card data: the card token of an intent final for ``days`` days. Only the
  authorization stage ever decrypts it (retries included, while the intent is
  ``processing``); a hold (``requires_capture``) is kept as it may still be
  captured, though capture, void and refunds move ledger money only, and an
  acquirer refunds by its authorization reference, never by the card number.
  Brand, last4, expiry and fingerprint stay, so the intent reads as before;
- webhook attempts (and the receivers' answers they store) older than ``days``;
- events older than ``days``, with their deliveries and those deliveries'
  attempts, unless a delivery of theirs is still pending (due or retrying);
- idempotency keys past their retention (never less than 24 h);
- limit counters of windows (a day, a month) that ended ``days`` ago: a
  reservation only ever counts against the window it was made in, and a late
  release (a hold expiring days later) of a pruned counter updates no row,
  which is right, as no new reservation can reach that window;
- refresh tokens that expired or were revoked ``days`` ago: such a token is
  refused whether its row is there or not (reuse detection only acts on a
  live token), so removing it changes no answer.

``audit_log`` is append-only (a trigger refuses DELETE) and is not pruned.
"""

from __future__ import annotations

from sqlalchemy import text

from shared.config import MIN_IDEMPOTENCY_RETENTION_H
from shared.db.tables import COUNTER_WINDOW_END, REFRESH_DEAD_SINCE
from shared.db.uow import UnitOfWork
from shared.domain.intent import FINAL_STATUSES

_FINAL = ", ".join(f"'{s}'" for s in sorted(FINAL_STATUSES))
_AGE = "now() - make_interval(days => :days)"

# The partial index ix_intents_card_purge holds exactly these rows.
_PURGE_CARDS = text(
    "UPDATE payment_intents SET card_token = NULL WHERE id IN ("
    " SELECT id FROM payment_intents"
    f" WHERE card_token IS NOT NULL AND status IN ({_FINAL}) AND finalized_at < {_AGE}"
    " ORDER BY finalized_at LIMIT :n FOR UPDATE SKIP LOCKED)"
)

_PRUNE_ATTEMPTS = text(
    "DELETE FROM webhook_attempts WHERE id IN ("
    f" SELECT id FROM webhook_attempts WHERE created_at < {_AGE}"
    " ORDER BY created_at LIMIT :n FOR UPDATE SKIP LOCKED)"
)

# Attempts, then deliveries, then events, in one statement: the foreign keys
# (NO ACTION) are checked at its end, when all three are gone. A redelivery
# locks its event (FOR KEY SHARE), so an event being redelivered is skipped.
_PRUNE_EVENTS = text(
    "WITH old AS ("
    " SELECT e.id FROM events e"
    f" WHERE e.created_at < {_AGE} AND NOT EXISTS ("
    "  SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending')"
    " ORDER BY e.created_at LIMIT :n FOR UPDATE SKIP LOCKED),"
    " gone AS (SELECT d.id FROM webhook_deliveries d WHERE d.event_id IN (SELECT id FROM old)),"
    " attempts AS ("
    "  DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM gone)),"
    " deliveries AS (DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM gone))"
    " DELETE FROM events WHERE id IN (SELECT id FROM old)"
)

_PRUNE_KEYS = text(
    "DELETE FROM idempotency_keys WHERE (merchant_id, key) IN ("
    " SELECT merchant_id, key FROM idempotency_keys"
    " WHERE created_at < now() - make_interval(hours => :hours)"
    " ORDER BY created_at LIMIT :n FOR UPDATE SKIP LOCKED)"
)

# Windows that ended longest ago first, through ix_limit_counters_window (0021).
_PRUNE_COUNTERS = text(
    "DELETE FROM limit_counters WHERE key IN ("
    f" SELECT key FROM limit_counters WHERE {COUNTER_WINDOW_END}"
    "  < to_char((now() AT TIME ZONE 'UTC')::date - :days, 'YYYY-MM-DD')"
    f" ORDER BY {COUNTER_WINDOW_END} LIMIT :n FOR UPDATE SKIP LOCKED)"
)

# Dead longest first, through ix_refresh_tokens_dead (0021).
_PRUNE_TOKENS = text(
    "DELETE FROM refresh_tokens WHERE token_hash IN ("
    f" SELECT token_hash FROM refresh_tokens WHERE {REFRESH_DEAD_SINCE} < {_AGE}"
    f" ORDER BY {REFRESH_DEAD_SINCE} LIMIT :n FOR UPDATE SKIP LOCKED)"
)


def purge_card_data(uow: UnitOfWork, days: int, limit: int) -> int:
    """Drop the card token of up to ``limit`` intents final for ``days`` days; how many."""
    return uow.conn.execute(_PURGE_CARDS, {"days": days, "n": limit}).rowcount


def prune_webhook_attempts(uow: UnitOfWork, days: int, limit: int) -> int:
    """Delete up to ``limit`` webhook attempts older than ``days``; how many."""
    return uow.conn.execute(_PRUNE_ATTEMPTS, {"days": days, "n": limit}).rowcount


def prune_events(uow: UnitOfWork, days: int, limit: int) -> int:
    """Delete up to ``limit`` events older than ``days`` (none with a pending delivery)."""
    return uow.conn.execute(_PRUNE_EVENTS, {"days": days, "n": limit}).rowcount


def prune_idempotency_keys(uow: UnitOfWork, hours: int, limit: int) -> int:
    """Delete up to ``limit`` keys older than ``hours`` (floored at 24 h here too)."""
    hours = max(hours, MIN_IDEMPOTENCY_RETENTION_H)
    return uow.conn.execute(_PRUNE_KEYS, {"hours": hours, "n": limit}).rowcount


def prune_limit_counters(uow: UnitOfWork, days: int, limit: int) -> int:
    """Delete up to ``limit`` limit counters whose window ended ``days`` ago; how many."""
    return uow.conn.execute(_PRUNE_COUNTERS, {"days": days, "n": limit}).rowcount


def prune_refresh_tokens(uow: UnitOfWork, days: int, limit: int) -> int:
    """Delete up to ``limit`` refresh tokens expired or revoked ``days`` ago; how many."""
    return uow.conn.execute(_PRUNE_TOKENS, {"days": days, "n": limit}).rowcount
