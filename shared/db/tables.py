"""Tables, as SQLAlchemy Core. Services write SQL against these; no ORM.

Money columns are NUMERIC(38,0): ETH has 18 decimals, BIGINT is not enough.
The migration in ``migrations/versions`` creates exactly these tables plus the
trigger that makes ledger transfers immutable.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import TypeDecorator

from shared.domain.scopes import ALL_SCOPES

# What api_clients.scopes holds for a client made before scopes existed.
ALL_SCOPES_TEXT = " ".join(ALL_SCOPES)


class Money(TypeDecorator):
    """NUMERIC(38,0) that reads back as ``int`` (never Decimal, never float)."""

    impl = Numeric(38, 0)
    cache_ok = True

    def process_result_value(self, value, dialect):
        return None if value is None else int(value)


metadata = MetaData()


def _now():
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


merchants = Table(
    "merchants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", Text, nullable=False),
    # Superseded by the merchant's first webhook endpoint (0015 copied them there):
    # read and written by nothing since, kept while processes of the version before
    # may still run (a rolling deploy); a later migration drops them.
    Column("webhook_url", Text),
    Column("webhook_secret_enc", Text),
    Column("webhook_secret_prev_enc", Text),
    Column("webhook_secret_prev_expires_at", DateTime(timezone=True)),
    Column("fraud_block_threshold", Integer),
    # {"bps": {"instant": 290, ...}, "fixed": {"USD": 30, ...}}; NULL = default plan.
    Column("fee_plan", JSONB),
    _now(),
    # Set while suspended: its clients are refused (shared/services/suspensions.py, 0013).
    Column("suspended_at", DateTime(timezone=True)),
    Column("suspended_reason", Text),
    # Where its bank payments are credited (0019): a bank of BANKS and an account there.
    Column("settlement_bank", String(32)),
    Column("settlement_bank_account", String(64)),
    Index("ix_merchants_suspended", "id", postgresql_where=text("suspended_at IS NOT NULL")),
)

api_clients = Table(
    "api_clients",
    metadata,
    Column("client_id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.id"), nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    _now(),
    # Space-separated (shared/domain/scopes.py); rows older than 0009 got them all.
    Column("scopes", Text, nullable=False, server_default=ALL_SCOPES_TEXT),
    # During a secret rotation the old secret still authenticates until then.
    Column("previous_secret_hash", Text),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    # SHA-256 (64 lower-case hex digits) of the client certificate it is bound to.
    Column("cert_sha256", String(64)),
    # The API's revocation list reads the recently revoked clients (0009).
    Index("ix_api_clients_revoked", "revoked_at", postgresql_where=text("revoked_at IS NOT NULL")),
)

# When a refresh token stopped being usable: LEAST ignores NULL, so a token
# never revoked ends at its expiry. Retention filters and sorts on exactly this
# expression, so that ix_refresh_tokens_dead serves it.
REFRESH_DEAD_SINCE = "LEAST(expires_at, revoked_at)"

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(40), nullable=False, index=True),
    Column("client_id", String(40), ForeignKey("api_clients.client_id"), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("scope", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    _now(),
    # No token of the family outlives this, however often it is rotated (0009;
    # NULL for families begun before it: their next rotation sets it).
    Column("family_expires_at", DateTime(timezone=True)),
    # Revoking a client revokes every refresh token it holds (0009).
    Index("ix_refresh_tokens_client", "client_id"),
    # Retention takes the tokens dead longest first: expired or revoked (0021).
    Index("ix_refresh_tokens_dead", text(REFRESH_DEAD_SINCE)),
)

merchant_limits = Table(
    "merchant_limits",
    metadata,
    Column("merchant_id", String(40), ForeignKey("merchants.id"), nullable=False),
    Column("currency", String(8), nullable=False),
    # 'merchant': totals of the merchant; 'payer': totals of one card or wallet.
    Column("scope", String(16), nullable=False),
    Column("per_transaction", Money),
    Column("daily", Money),
    Column("monthly", Money),
    PrimaryKeyConstraint("merchant_id", "currency", "scope"),
)

# The last day of a limit counter's window, read from its key
# (shared/domain/limits.py counter_keys: "...:d:YYYY-MM-DD" or "...:m:YYYY-MM";
# a month's "-31" sorts after its last day; NULL for any other key). Text
# compared byte-wise (COLLATE "C"): ISO dates sort as text. Retention filters
# and sorts on exactly this expression, so that ix_limit_counters_window serves it.
COUNTER_WINDOW_END = (
    "(CASE WHEN substr(key, length(key) - 12, 3) = ':d:' THEN right(key, 10)"
    " WHEN substr(key, length(key) - 9, 3) = ':m:' THEN right(key, 7) || '-31'"
    ' END COLLATE "C")'
)

# Running totals reserved against limits, one row per (subject, period).
limit_counters = Table(
    "limit_counters",
    metadata,
    Column("key", Text, primary_key=True),
    Column("used", Money, nullable=False, server_default=text("0")),
    CheckConstraint("used >= 0", name="limit_counters_used_nonnegative"),
    # Retention takes the counters of windows that ended longest ago (0021).
    Index("ix_limit_counters_window", text(COUNTER_WINDOW_END)),
)

blocklist = Table(
    "blocklist",
    metadata,
    # 'card_fingerprint', 'wallet', 'ip', 'customer'
    Column("kind", String(32), nullable=False),
    Column("value", Text, nullable=False),
    Column("reason", Text),
    _now(),
    PrimaryKeyConstraint("kind", "value"),
)

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("code", Text, nullable=False, unique=True),
    Column("currency", String(8), nullable=False),
    # TigerBeetle's four balances; a transfer moves amounts between them.
    Column("debits_pending", Money, nullable=False, server_default=text("0")),
    Column("debits_posted", Money, nullable=False, server_default=text("0")),
    Column("credits_pending", Money, nullable=False, server_default=text("0")),
    Column("credits_posted", Money, nullable=False, server_default=text("0")),
    # debits (pending + posted) must never exceed posted credits: payer wallets.
    Column("no_overdraft", Boolean, nullable=False, server_default=text("false")),
    _now(),
    CheckConstraint(
        "NOT no_overdraft OR debits_pending + debits_posted <= credits_posted",
        name="ledger_accounts_no_overdraft",
    ),
)

ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    # posted | pending | post_pending | void_pending | expire_pending
    Column("kind", String(16), nullable=False),
    Column("debit_account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("credit_account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("amount", Money, nullable=False),
    Column("currency", String(8), nullable=False),
    # For post/void/expire: the pending transfer it resolves; unique, so a hold
    # is resolved at most once whatever races happen.
    Column("pending_id", BigInteger, ForeignKey("ledger_transfers.id"), unique=True),
    Column("timeout_at", DateTime(timezone=True)),
    Column("intent_id", String(40), index=True),
    # authorization | capture | fee | settlement | wallet_funding | refund | fee_refund |
    # bank_payout | bank_collection (bank payments, shared/services/bank_*.py)
    Column("reason", String(32), nullable=False),
    _now(),
    CheckConstraint("amount > 0", name="ledger_transfers_amount_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="ledger_transfers_two_sides"),
    # Daily report and sealing read one day; append-only rows keep created_at
    # in physical order, so a tiny BRIN index does (0004).
    Index("ix_transfers_created_brin", "created_at", postgresql_using="brin"),
)

wallets = Table(
    "wallets",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", Text, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    _now(),
)

payment_intents = Table(
    "payment_intents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("amount", Money, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("status", String(24), nullable=False),
    Column("stage", String(24), nullable=False),
    Column("capture_method", String(16), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("pm_type", String(16), nullable=False),
    Column("card_token", Text),
    Column("card_fingerprint", String(64)),
    Column("card_last4", String(4)),
    Column("card_brand", String(16)),
    Column("card_exp_month", Integer),
    Column("card_exp_year", Integer),
    Column("wallet_id", String(40)),
    # A bank_account payment's payer: a bank of BANKS and its account there (0019).
    Column("bank", String(32)),
    Column("bank_account", String(64)),
    # The payer's identity for limits and fraud history: card fingerprint or wallet id.
    Column("payer_key", Text, nullable=False),
    Column("description", Text),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("customer", Text),
    Column("client_ip", String(64)),
    Column("request_id", String(64)),
    Column("risk_score", Integer),
    Column("risk_reasons", JSONB),
    # normal, elevated (a review was opened) or highest (blocked); NULL before 0016.
    Column("risk_level", String(16)),
    Column("fee_amount", Money),
    Column("amount_capturable", Money, nullable=False, server_default=text("0")),
    Column("amount_received", Money, nullable=False, server_default=text("0")),
    Column("amount_refunded", Money, nullable=False, server_default=text("0")),
    Column("failure_code", String(32)),
    Column("failure_message", Text),
    Column("cancellation_reason", String(32)),
    Column("settlement_status", String(16)),
    # What is currently counted against limits, and the day it was counted on.
    Column("limit_reserved", Money, nullable=False, server_default=text("0")),
    Column("limit_day", Date),
    Column("hold_transfer_id", BigInteger),
    Column("hold_expires_at", DateTime(timezone=True)),
    Column("auth_attempts", Integer, nullable=False, server_default=text("0")),
    # Set by the outbox relay when it hands the intent to the first queue.
    Column("enqueued_at", DateTime(timezone=True)),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("stage_changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finalized_at", DateTime(timezone=True)),
    # The scheduler's last re-drive of the intent: re-drives back off (0008).
    Column("redriven_at", DateTime(timezone=True)),
    Column("settled_at", DateTime(timezone=True)),
    Column("settlement_id", String(40)),
    CheckConstraint("amount > 0", name="payment_intents_amount_positive"),
    CheckConstraint(
        "risk_level IN ('normal', 'elevated', 'highest')", name="payment_intents_risk_level"
    ),
    Index("ix_intents_merchant_created", "merchant_id", "created_at", "id"),
    # Fraud's merchant mean: the last 500 successes, whatever is still processing (0023).
    Index(
        "ix_intents_merchant_succeeded",
        "merchant_id",
        "currency",
        "created_at",
        postgresql_where=text("status = 'succeeded'"),
    ),
    Index("ix_intents_fingerprint_created", "card_fingerprint", "created_at"),
    Index("ix_intents_client_ip_created", "client_ip", "created_at"),
    Index("ix_intents_payer_currency", "payer_key", "currency"),
    Index(
        "ix_intents_processing",
        "stage_changed_at",
        postgresql_where=text("status = 'processing'"),
    ),
    # The oldest intent waiting at each stage, one index descent per stage
    # (the metrics collector reads it at every scrape; 0007).
    Index(
        "ix_intents_processing_stage",
        "stage",
        "stage_changed_at",
        postgresql_where=text("status = 'processing'"),
    ),
    Index(
        "ix_intents_outbox",
        "created_at",
        postgresql_where=text("enqueued_at IS NULL"),
    ),
    Index(
        "ix_intents_holds",
        "hold_expires_at",
        postgresql_where=text("status = 'requires_capture'"),
    ),
    # Settlement windows: what is due, per priority, grouped by merchant (0003).
    Index(
        "ix_intents_unsettled",
        "priority",
        "merchant_id",
        "currency",
        "id",
        postgresql_where=text("status = 'succeeded' AND settlement_status = 'pending'"),
    ),
    # The oldest unsettled intent per priority: the settlement-lag gauge (0007).
    Index(
        "ix_intents_unsettled_age",
        "priority",
        "finalized_at",
        postgresql_where=text("status = 'succeeded' AND settlement_status = 'pending'"),
    ),
    # Card-data retention: final intents still holding a card token, oldest
    # first; a purged row leaves the index (0018).
    Index(
        "ix_intents_card_purge",
        "finalized_at",
        postgresql_where=text(
            "card_token IS NOT NULL AND status IN ('succeeded', 'failed', 'canceled')"
        ),
    ),
    # Erasure on request finds a customer's intents (0018).
    Index(
        "ix_intents_merchant_customer",
        "merchant_id",
        "customer",
        postgresql_where=text("customer IS NOT NULL"),
    ),
)

# Two-phase transactions with the banks and their durable decisions (0019,
# shared/services/bank_payments.py).
bank_transactions = Table(
    "bank_transactions",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("intent_id", String(40), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("refund_id", String(40)),
    Column("currency", String(8), nullable=False),
    Column("participants", JSONB, nullable=False),
    Column("votes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("decision", String(8)),
    Column("reason", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("acks", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("completed_at", DateTime(timezone=True)),
    _now(),
    CheckConstraint("decision IN ('commit', 'abort')", name="bank_transactions_decision"),
    CheckConstraint("kind IN ('payment', 'refund')", name="bank_transactions_kind"),
    Index("ix_bank_transactions_open", "created_at", postgresql_where=text("completed_at IS NULL")),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("merchant_id", String(40), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_method", String(8), nullable=False),
    Column("request_path", Text, nullable=False),
    Column("request_hash", String(64), nullable=False),
    # NULL while the first request is in flight.
    Column("response_status", Integer),
    Column("response_body", JSONB),
    Column("locked_at", DateTime(timezone=True)),
    _now(),
    PrimaryKeyConstraint("merchant_id", "key"),
    Index("ix_idempotency_created", "created_at"),
)

# One row per state change, written in the same transaction as the change.
events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("type", String(64), nullable=False),
    Column("object_id", String(40), nullable=False),
    # The object as the API shows it, at the time of the change.
    Column("data", JSONB, nullable=False),
    Column("request_id", String(64)),
    _now(),
    Index("ix_events_merchant_created", "merchant_id", "created_at", "id"),
    Index("ix_events_object", "object_id"),
    # Event retention walks the oldest first (0018).
    Index("ix_events_created", "created_at"),
)

# Where a merchant's webhooks go: several per merchant, each with its URL, its
# secret, the event types it receives and an on/off switch (0015). The oldest
# not deleted is the merchant's first endpoint: what the merchant-level routes
# and the CLI's set-webhook-url and rotate-webhook-secret act on.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.id"), nullable=False),
    # NULL only for a first endpoint made with its merchant before any URL was given.
    Column("url", Text),
    # AES-GCM ciphertexts (a secret must be recoverable to sign), AAD secret_aad or id.
    Column("secret_enc", Text, nullable=False),
    # During a rotation the old secret keeps signing (a second v1) until then.
    Column("secret_prev_enc", Text),
    Column("secret_prev_expires_at", DateTime(timezone=True)),
    # What both ciphertexts are bound to when it is not this row's id: the merchant's
    # id for a secret 0015 copied from the merchants row (a migration holds no keys to
    # re-seal it). A rotation re-seals both under the id and clears it.
    Column("secret_aad", String(40)),
    # Event types, or {"*"} for every type (shared/domain/webhook_endpoints.py).
    Column("enabled_events", ARRAY(Text), nullable=False),
    # enabled | disabled
    Column("status", String(16), nullable=False, server_default=text("'enabled'")),
    Column("description", Text),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _now(),
    Column("deleted_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('enabled', 'disabled')", name="ck_webhook_endpoints_status"),
    # The create path's fan-out and the lists: a merchant's live endpoints.
    Index(
        "ix_webhook_endpoints_merchant",
        "merchant_id",
        "created_at",
        "id",
        postgresql_where=text("deleted_at IS NULL"),
    ),
)

# A webhook delivery of one event to one endpoint's URL; its retry schedule lives
# here (next_attempt_at), never in a multi-day Celery countdown.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("event_id", String(40), ForeignKey("events.id"), nullable=False, index=True),
    Column("merchant_id", String(40), nullable=False),
    # NULL only for rows a process of the version before 0015 wrote during a rolling
    # deploy: those go to the merchant's first endpoint (shared/services/webhooks.py).
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id")),
    Column("url", Text, nullable=False),
    # pending | succeeded | failed
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
    Index("ix_deliveries_merchant_created", "merchant_id", "created_at", "id"),
    # An endpoint's deliveries: its list, and its pending ones when it changes (0015).
    Index("ix_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
    Index(
        "ix_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer),
    # First 1 KiB of the receiver's answer, for debugging their endpoint.
    Column("response_body", Text),
    Column("error", Text),
    # succeeded | failed
    Column("outcome", String(16), nullable=False),
    _now(),
    Index("ix_attempts_delivery", "delivery_id", "attempt"),
    # Attempt retention walks the oldest first (0018).
    Index("ix_attempts_created", "created_at"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("payment_intent_id", String(40), ForeignKey("payment_intents.id"), nullable=False),
    Column("amount", Money, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(32)),
    # Part of the original fee given back to the merchant with this refund.
    Column("fee_refunded", Money, nullable=False, server_default=text("0")),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _now(),
    CheckConstraint("amount > 0", name="refunds_amount_positive"),
    Index("ix_refunds_intent", "payment_intent_id"),
    Index("ix_refunds_merchant_created", "merchant_id", "created_at", "id"),
)

# A payout of settled intents into the merchant's available balance.
settlements = Table(
    "settlements",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("amount", Money, nullable=False),
    Column("intent_count", Integer, nullable=False),
    _now(),
    Index("ix_settlements_merchant_created", "merchant_id", "created_at"),
)

daily_reports = Table(
    "daily_reports",
    metadata,
    Column("report_date", Date, nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("counts", JSONB, nullable=False),  # intents by status
    Column("gross", Money, nullable=False),
    Column("fees", Money, nullable=False),
    Column("refunds", Money, nullable=False),
    Column("net", Money, nullable=False),
    Column("settled", Money, nullable=False),
    _now(),
    PrimaryKeyConstraint("report_date", "merchant_id", "currency"),
)

report_runs = Table(
    "report_runs",
    metadata,
    Column("report_date", Date, primary_key=True),
    # Reconciliation findings: empty list when the books balance.
    Column("discrepancies", JSONB, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    _now(),
)

# Hash chain over ledger transfers, written by the sealing job (not the hot
# path): each transfer's hash covers its content and the previous hash.
ledger_entry_hashes = Table(
    "ledger_entry_hashes",
    metadata,
    # No foreign key (0022): its check locked every transfer a seal hashed.
    Column("transfer_id", BigInteger, primary_key=True),
    Column("hash", String(64), nullable=False),
)

ledger_seals = Table(
    "ledger_seals",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False, unique=True),
    Column("first_transfer_id", BigInteger),
    Column("last_transfer_id", BigInteger),
    Column("entry_count", Integer, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("seal_hash", String(64), nullable=False),
    _now(),
)

# A seal's hash sent to a public chain (migration 0020): the signed transaction
# is kept and resent as is until mined, then the row is final.
ledger_anchors = Table(
    "ledger_anchors",
    metadata,
    Column("day", Date, primary_key=True),  # its seal's (no foreign key: see 0020)
    Column("seal_hash", String(64), nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("sender", String(42), nullable=False),
    Column("nonce", BigInteger, nullable=False),
    Column("tx_hash", String(66), nullable=False, unique=True),
    Column("raw_tx", LargeBinary, nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("block_number", BigInteger),
    Column("mined_at", DateTime(timezone=True)),
    _now(),
)

# The last successful run of each periodic job (its beat entry name), written
# in the job's own transaction: it survives restarts of every process and
# reads the same from anywhere (the beat-job metric).
beat_job_runs = Table(
    "beat_job_runs",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("last_success_at", DateTime(timezone=True), nullable=False),
)

# One row per erased customer of a merchant: a repeat erasure answers the same
# one. The customer is named by a keyed hash (shared/domain/erasure.py), never
# by its value, which is what was erased (0018).
customer_erasures = Table(
    "customer_erasures",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("customer_hash", String(64), nullable=False),
    Column("intents_erased", Integer, nullable=False, server_default=text("0")),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("uq_customer_erasures", "merchant_id", "customer_hash", unique=True),
)

# Operator accounts (the console's and the CLI's people). The TOTP secret is
# encrypted with the card keys, AAD the operator's id; totp_last_step is the
# last step accepted (a code is good once). Emails are unique whatever their case.
operators = Table(
    "operators",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("password_temporary", Boolean, nullable=False, server_default=text("true")),
    Column("totp_secret_enc", Text, nullable=False),
    Column("totp_last_step", BigInteger),
    Column("disabled_at", DateTime(timezone=True)),
    # Lockout (0012): failures since first_failure_at; locked until locked_until.
    Column("failed_logins", Integer, nullable=False, server_default=text("0")),
    Column("first_failure_at", DateTime(timezone=True)),
    Column("locked_until", DateTime(timezone=True)),
    _now(),
    CheckConstraint("role IN ('admin', 'support', 'viewer')", name="ck_operators_role"),
    Index("uq_operators_email", func.lower(text("email")), unique=True),
)

# Who did what, appended in the transaction of the change; never updated or
# deleted (trigger and grants, as the ledger). before/after hold no secrets.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text),
    Column("request_id", String(64)),
    Column("source_ip", String(64)),
    Column("before", JSONB),
    Column("after", JSONB),
    Index("ix_audit_log_at", "at"),
)

# Transactional outbox: a committed insert wakes the relay (NOTIFY is
# delivered at commit, never for a rolled-back transaction).
OUTBOX_NOTIFY_SQL = """
CREATE OR REPLACE FUNCTION payment_intents_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('clearhouse_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payment_intents_outbox_notify
    AFTER INSERT ON payment_intents
    FOR EACH STATEMENT EXECUTE FUNCTION payment_intents_outbox_notify();
"""

LEDGER_IMMUTABLE_SQL = """
CREATE OR REPLACE FUNCTION ledger_transfers_immutable() RETURNS trigger AS $$
BEGIN
    -- Corrections are new transfers; a posted entry is never changed or removed.
    RAISE EXCEPTION 'ledger transfers are immutable: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_transfers_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_transfers_immutable();

CREATE TRIGGER ledger_transfers_no_truncate
    BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_transfers_immutable();
"""

__all__ = [
    "Money",
    "metadata",
    "merchants",
    "api_clients",
    "refresh_tokens",
    "merchant_limits",
    "limit_counters",
    "blocklist",
    "ledger_accounts",
    "ledger_transfers",
    "wallets",
    "payment_intents",
    "idempotency_keys",
    "events",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "refunds",
    "settlements",
    "customer_erasures",
    "daily_reports",
    "report_runs",
    "ledger_entry_hashes",
    "ledger_seals",
    "ledger_anchors",
    "beat_job_runs",
    "operators",
    "audit_log",
    "LEDGER_IMMUTABLE_SQL",
    "OUTBOX_NOTIFY_SQL",
]
