"""Settings: one frozen object built from the environment at start.

This is the one module that reads the environment. Each entry point (the
API's ``get_app``, the Celery app, the relay, the CLI) builds its settings
once and passes them down; a bad value fails that build, naming the variable.
Every setting has a default that works on a developer machine; the README
lists them all. Tests build their own with ``Settings.from_env(**overrides)``
or ``dataclasses.replace``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote, urlsplit, urlunsplit

from shared.domain import fusion


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from exc


def _int_in(name: str, default: int, low: int, high: int) -> int:
    value = _int(name, default)
    if not low <= value <= high:
        raise ValueError(f"setting {name} must be from {low} to {high}, got {value}")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be a number, got {raw!r}") from exc


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _timeouts(name: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        values = tuple(int(v) for v in raw.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0:
        raise ValueError(
            f"setting {name} must be statement,lock,idle_in_transaction in ms, got {raw!r}"
        )
    return values


def _str(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _optional_str(name: str) -> str | None:
    return os.environ.get(name) or None


# URL schemes of kombu's AMQP transports (py-amqp); anything else is Redis.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def with_user(database_url: str, user: str = "postgres") -> str:
    """``database_url``'s server and database, as ``user`` (no password).

    With the default user, MIGRATION_DATABASE_URL's default: the superuser a
    fresh local or CI Postgres trusts (initdb's ``postgres``). A deployment
    names its own.
    """
    parts = urlsplit(database_url)
    hostport = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}"))


def url_password(database_url: str, user: str) -> str | None:
    """The password a database URL gives ``user`` (decoded), or None (none, or another user)."""
    parts = urlsplit(database_url)
    if parts.username is None or unquote(parts.username) != user or not parts.password:
        return None
    return unquote(parts.password)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _host(name: str, default: str) -> str:
    """An address to bind: an IP literal (``0.0.0.0``, ``::``) or a host name."""
    raw = _str(name, default).strip()
    try:
        ipaddress.ip_address(raw)
        return raw
    except ValueError:
        pass
    labels = raw.split(".")
    # A name whose last label is all digits would be a mistyped IP address.
    if len(raw) <= 253 and all(map(_HOST_LABEL.match, labels)) and not labels[-1].isdigit():
        return raw
    raise ValueError(f"setting {name} must be an IP address or a host name, got {raw!r}")


# Secrets: their errors never quote the value.

_KEY_VERSION = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


def decode_key(text: str, what: str, size: int = 32) -> bytes:
    """Base64 ``text`` as a key of exactly ``size`` bytes, else ValueError naming ``what``."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    if len(key) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(key)}")
    return key


def parse_card_keys(spec: str) -> dict[str, bytes]:
    """Parse ``v1:<b64>,v2:<b64>`` into an ordered {version: key}; the last is current."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        version, sep, encoded = item.partition(":")
        if not sep or not _KEY_VERSION.match(version):
            raise ValueError("card keys must look like v1:<base64>,v2:<base64>")
        if version in keys:
            raise ValueError(f"card key version {version} appears twice")
        keys[version] = decode_key(encoded, f"card key {version}")
    if not keys:
        raise ValueError("no card encryption keys configured")
    return keys


def _card_keys() -> tuple[str, str]:
    keys, fingerprint = _str("CARD_KEYS", ""), _str("CARD_FINGERPRINT_KEY", "")
    if bool(keys) != bool(fingerprint):
        # Fingerprints from per-host generated keys would silently differ
        # between machines and break velocity checks.
        raise ValueError("set both CARD_KEYS and CARD_FINGERPRINT_KEY, or neither")
    if keys:
        try:
            parse_card_keys(keys)
        except ValueError as exc:
            raise ValueError(f"setting CARD_KEYS is invalid: {exc}") from None
        decode_key(fingerprint, "setting CARD_FINGERPRINT_KEY")
    return keys, fingerprint


def _private_pem(name: str) -> str:
    """PEM block(s) with at least one PRIVATE KEY; the key itself is parsed by its user."""
    raw = _str(name, "")
    if not raw:
        return raw
    # Env vars and secret stores often carry PEM with escaped newlines.
    labels = {m.group(1) for m in _PEM_BLOCK.finditer(raw.replace("\\n", "\n"))}
    if "PRIVATE KEY" not in labels or labels - {"PRIVATE KEY", "PUBLIC KEY"}:
        raise ValueError(
            f"setting {name} must hold PEM blocks: at least one PRIVATE KEY (PKCS#8),"
            " and PUBLIC KEY blocks of retired keys"
        )
    return raw


ENVIRONMENTS = ("development", "production")


def _environment(name: str, default: str) -> str:
    raw = _str(name, default).strip().lower()
    if raw not in ENVIRONMENTS:
        raise ValueError(f"setting {name} must be one of {', '.join(ENVIRONMENTS)}, got {raw!r}")
    return raw


def _tls_files() -> tuple[str | None, str | None, str | None]:
    """TLS_CERT_FILE, TLS_KEY_FILE and TLS_CLIENT_CA_FILE, checked as a set."""
    cert, key = _optional_str("TLS_CERT_FILE"), _optional_str("TLS_KEY_FILE")
    client_ca = _optional_str("TLS_CLIENT_CA_FILE")
    if bool(cert) != bool(key):
        raise ValueError("set both TLS_CERT_FILE and TLS_KEY_FILE, or neither")
    if client_ca and not cert:
        # Client certificates are a TLS feature: without a server certificate the
        # API would serve plain HTTP and silently require nothing.
        raise ValueError("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE")
    return cert, key, client_ca


_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def _anchor(d: Settings) -> dict:
    """The ANCHOR_* settings, checked as a set: a URL needs a chain id and one key."""
    url, key = _str("ANCHOR_RPC_URL", ""), _str("ANCHOR_PRIVATE_KEY", "").strip()
    keystore = _optional_str("ANCHOR_KEYSTORE_FILE")
    password = _optional_str("ANCHOR_KEYSTORE_PASSWORD_FILE")
    chain_id = _int("ANCHOR_CHAIN_ID", d.anchor_chain_id)
    if key and not _HEX_KEY.match(key):
        raise ValueError("setting ANCHOR_PRIVATE_KEY must be 32 bytes of hex")
    if key and keystore:
        raise ValueError("set ANCHOR_PRIVATE_KEY or ANCHOR_KEYSTORE_FILE, not both")
    if keystore and not password:
        raise ValueError("ANCHOR_KEYSTORE_FILE needs ANCHOR_KEYSTORE_PASSWORD_FILE")
    if url and chain_id <= 0:
        raise ValueError("ANCHOR_RPC_URL needs ANCHOR_CHAIN_ID (the node's chain id)")
    if url and not (key or keystore):
        raise ValueError("ANCHOR_RPC_URL needs ANCHOR_PRIVATE_KEY or ANCHOR_KEYSTORE_FILE")
    return dict(
        anchor_rpc_url=url,
        anchor_private_key=key,
        anchor_keystore_file=keystore,
        anchor_keystore_password_file=password,
        anchor_chain_id=chain_id,
        anchor_interval_s=_float("ANCHOR_INTERVAL_S", d.anchor_interval_s),
        anchor_timeout_s=_float("ANCHOR_TIMEOUT_S", d.anchor_timeout_s),
        anchor_confirmations=_int_in("ANCHOR_CONFIRMATIONS", d.anchor_confirmations, 1, 1000),
    )


_BANK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def parse_banks(spec: str) -> tuple[tuple[str, str], ...]:
    """``bank_a=127.0.0.1:50061,bank_b=...`` as ((name, address), ...); ValueError if malformed."""
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, address = item.partition("=")
        host, colon, port = address.rpartition(":")
        if not (sep and _BANK_NAME.match(name) and colon and host and port.isdigit()):
            raise ValueError(f"banks must look like bank_a=127.0.0.1:50061,..., got {item!r}")
        if name in found:
            raise ValueError(f"bank {name} appears twice")
        found[name] = address
    return tuple(found.items())


def _banks(name: str, default: str) -> str:
    raw = _str(name, default)
    try:
        parse_banks(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} is invalid: {exc}") from None
    return raw


# Idempotency keys are promised for at least 24 h: a lower
# setting would let an old key's retry create a second payment.
MIN_IDEMPOTENCY_RETENTION_H = 24
# Retention periods in days are at least one: 0 would purge card data the
# moment a payment ends, a typo rather than a policy.
MIN_RETENTION_DAYS = 1
_RETENTION_DAYS = (
    "card_retention_days",
    "webhook_attempt_retention_days",
    "event_retention_days",
    "limit_counter_retention_days",
    "refresh_token_retention_days",
)


@dataclass(frozen=True)
class Settings:
    # production: a missing key is a start-up error, never generated.
    environment: str = "development"
    # What the services connect as: the app role, which may read and write rows
    # but neither change the schema nor rewrite the ledger (shared/db/roles.py).
    database_url: str = field(
        default="postgresql+psycopg2://clearhouse_app@127.0.0.1:5432/clearhouse", repr=False
    )
    # What `clearhouse db upgrade` connects as: a superuser (creates the roles,
    # migrates as clearhouse_owner) or clearhouse_owner itself. Empty:
    # database_url's server and database as the superuser ``postgres``.
    migration_database_url: str = field(default="", repr=False)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key we write (queues, beat): isolates deployments.
    redis_key_prefix: str = ""
    # The Celery broker. Empty: the Redis at redis_url (queues under
    # redis_key_prefix). amqp://user:pass@host:port/vhost: RabbitMQ, the vhost
    # isolating deployments; Redis still holds rate limits, lockout and beat.
    broker_url: str = field(default="", repr=False)
    # Where generated dev keys (JWT signing key, card encryption keys) live
    # when they are not given explicitly. Git-ignored.
    key_dir: str = "var/keys"
    # Secrets, kept out of repr (and so out of logs and tracebacks). Empty:
    # keys come from (or are generated in) key_dir.
    # Ed25519 PEM block(s): the last PRIVATE KEY signs; every key verifies.
    jwt_private_key: str = field(default="", repr=False)
    # The same for operator tokens (their own ring: operator_jwt_keys.json).
    operator_jwt_private_key: str = field(default="", repr=False)
    # ``v1:<base64 32 bytes>,v2:...`` (the last is current) and the base64
    # HMAC key of card fingerprints: both or neither.
    card_keys: str = field(default="", repr=False)
    card_fingerprint_key: str = field(default="", repr=False)
    # How often a process looks for rotated key files (one stat per file).
    key_reload_interval_s: float = 2.0
    # The card-data re-encrypt job: how often beat starts a pass, rows per transaction.
    reencrypt_interval_s: float = 60.0
    reencrypt_batch: int = 500
    jwt_issuer: str = "clearhouse"
    jwt_audience: str = "clearhouse-api"
    access_token_ttl_s: int = 900
    # Operator tokens: their own audience; 15 minutes each; refreshed without
    # the TOTP only until this long after the login that asked for it.
    operator_jwt_audience: str = "clearhouse-operator"
    operator_token_ttl_s: int = 900
    operator_session_max_s: int = 12 * 3600
    refresh_token_ttl_s: int = 30 * 24 * 3600
    # A refresh family's absolute lifetime: rotating never carries a login past it.
    refresh_family_ttl_s: int = 90 * 24 * 3600
    # Sandbox acquirer: simulated network latency and injected failures.
    acquirer_latency_ms: int = 0
    acquirer_failure_rate: float = 0.0
    # Authorization retries for transient acquirer errors (processing_error).
    auth_max_attempts: int = 3
    auth_retry_base_s: float = 0.5
    hold_ttl_s: int = 7 * 24 * 3600
    fraud_block_threshold: int = 75
    # The review band: scores this many points below the block threshold open
    # a review (the payment goes on); at least 1, so 4000000000009235 has a band.
    fraud_review_band: int = 10
    # First-stage batching (celery-batches): flush at N messages or after T ms.
    batch_max: int = 100
    batch_interval_ms: int = 25
    # Consecutive stages run in one transaction (shared/domain/fusion.py); () none.
    fused_stages: tuple[str, ...] = fusion.PIPELINE
    # Intents not advanced for this long are re-enqueued by the scheduler.
    redrive_after_s: int = 60
    redrive_interval_s: int = 30
    hold_expiry_interval_s: int = 30
    idempotency_retention_h: int = 24
    # Retention (shared/services/retention.py): card tokens of intents final
    # this long are purged; webhook attempts and events older than this are
    # deleted. Beat starts each job this often; one transaction per batch. A
    # batch holds its rows until it commits: 200 rows took at most 0.6 s on the
    # loaded dev machine (1,000: 2.4 s, past the API's 2 s lock_timeout).
    card_retention_days: int = 30
    webhook_attempt_retention_days: int = 30
    event_retention_days: int = 90
    # Limit counters are pruned this many days after their window (day or
    # month) ended; refresh tokens this many days after they expired or were
    # revoked (kept a while so an operator can still see a revoked family).
    limit_counter_retention_days: int = 2
    refresh_token_retention_days: int = 7
    retention_interval_s: float = 3600.0
    retention_batch: int = 200
    max_body_bytes: int = 64 * 1024
    # Postgres timeouts per kind of connection, in ms: statement, lock wait,
    # idle in transaction. The API answers fast or not at all; workers run
    # batches; reports and seals scan a whole day. 0 disables one.
    db_timeouts_api: tuple[int, int, int] = (5_000, 2_000, 10_000)
    db_timeouts_worker: tuple[int, int, int] = (30_000, 10_000, 60_000)
    db_timeouts_report: tuple[int, int, int] = (600_000, 30_000, 600_000)
    log_level: str = "INFO"
    # Webhooks: per-attempt timeout; retries back off for up to max_age; the
    # scale compresses the whole schedule (tests: 0.001 turns 3 days into ~4 min).
    webhook_timeout_s: float = 10.0
    webhook_max_age_s: int = 3 * 24 * 3600
    webhook_schedule_scale: float = 1.0
    # Refuse every webhook target address that is not globally routable (SSRF)
    # unless set; and the CA bundle https receivers' certificates are checked
    # against (None: certifi's).
    webhook_allow_private: bool = False
    webhook_ca_file: str | None = None
    webhook_rotation_overlap_h: int = 24
    webhook_dispatch_interval_s: float = 1.0
    # Sends of one merchant in flight at once per worker process, so one slow
    # receiver cannot take every sender thread (16) nor delay other merchants.
    webhook_merchant_concurrency: int = 4
    # Settlement windows: standard every N seconds; economy once a day at
    # 00:10 UTC unless an interval is given (tests).
    settlement_standard_interval_s: int = 300
    settlement_economy_interval_s: int = 0
    # Beat: the RedBeat lock (one active scheduler) expires after this long.
    beat_lock_timeout_s: int = 30
    # Prometheus multiprocess folder (cleared at start); workers' metrics port.
    metrics_dir: str = "var/metrics"
    worker_metrics_port: int = 9808
    # Address the worker metrics server binds: loopback unless told
    # (containers: 0.0.0.0 so Prometheus can scrape).
    worker_metrics_addr: str = "127.0.0.1"
    # The operator port: the API's /metrics (served by the gunicorn master, never
    # on the merchant-facing port) and the relay's; 0 disables one. The address
    # both bind: loopback unless told (containers: 0.0.0.0).
    metrics_port: int = 9807
    relay_metrics_port: int = 9806
    metrics_addr: str = "127.0.0.1"
    # Liveness file the relay and beat touch every loop; None: no file.
    heartbeat_file: str | None = None
    # Rate limits (requests per second; 0 disables one), per API client and
    # per source IP, and stricter ones on the OAuth endpoints (per client_id
    # sent and per IP). Each bucket holds rate_limit_burst_s seconds of its
    # rate: its burst. The per-IP rate leaves room for several merchants
    # behind one NAT (and for test suites, which all come from 127.0.0.1).
    rate_limit_per_client: float = 100.0
    rate_limit_per_ip: float = 500.0
    rate_limit_token_per_client: float = 10.0
    rate_limit_token_per_ip: float = 20.0
    rate_limit_burst_s: float = 2.0
    # Admission control: creates are refused (503 overloaded) while this many
    # intents are processing (0: off). 5,000 is about 25 s of the pipeline at
    # its measured saturation (~195/s) and 2.5 x what the chaos run's worst
    # fault holds back (20/s for the 90 s a restarted-empty Redis leaves
    # intents to the re-drive); the bench at 110/s keeps under 100.
    max_backlog: int = 5000
    # ... and while a create waited longer than this for one of the API's
    # threads (gunicorn's gthread queue; 0: off). Off by default: on a shared
    # development or CI machine a stall is no overload. Deployments set it
    # (deploy/: 250 ms): the bench at twice saturation keeps accept p99 near
    # its value at saturation with it (README, Admission control).
    max_queue_wait_ms: int = 0
    # Client lockout: this many failed authentications of one client_id within
    # the window lock it out of the OAuth endpoints for auth_lockout_s (0: off).
    auth_lockout_failures: int = 10
    auth_lockout_window_s: int = 900
    auth_lockout_s: int = 900
    # Operator lockout: this many failed logins (a wrong password or TOTP code)
    # of one operator within the window lock the account for operator_lockout_s,
    # even with the right credentials (0: off). Counted in Postgres.
    operator_lockout_failures: int = 5
    operator_lockout_window_s: int = 900
    operator_lockout_s: int = 900
    # HTTPS for the API (gunicorn): the server's certificate chain and key (PEM
    # files); with the client CA as well, every connection must present a
    # certificate that CA signed. None: plain HTTP.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # Ledger anchoring (shared/services/anchoring.py): each daily seal's hash is
    # sent in a transaction to an Ethereum-compatible node. Empty URL: off.
    # The signing key is a hex private key, or a keystore file (V3 JSON) and the
    # file holding its password; the chain id must be the node's, so a key is
    # never used on a chain it was not meant for.
    anchor_rpc_url: str = ""
    anchor_private_key: str = field(default="", repr=False)
    anchor_keystore_file: str | None = None
    anchor_keystore_password_file: str | None = None
    anchor_chain_id: int = 0
    # Beat sends unanchored seals and checks sent ones this often, until mined.
    anchor_interval_s: float = 60.0
    # Seconds one JSON-RPC call may take.
    anchor_timeout_s: float = 10.0
    # Blocks (its own included) that must hold an anchor before it is recorded
    # as mined, and so final: 1 trusts the first block (a dev chain); a public
    # chain can drop a recent block in a reorganisation.
    anchor_confirmations: int = 1
    # Banks (bank payments by two-phase commit): name -> host:port of each sandbox
    # bank's gRPC service (BANKS=bank_a=127.0.0.1:50061,bank_b=127.0.0.1:50062), and
    # the token the gateway presents (authorization: Bearer ...) and banks require.
    banks: str = "bank_a=127.0.0.1:50061,bank_b=127.0.0.1:50062"
    bank_token: str = field(default="dev-bank-token", repr=False)
    # The gateway's deadline per bank call: past it the bank counts as unavailable.
    bank_rpc_timeout_s: float = 2.0
    # A bank transaction with no decision this long after it began is presumed
    # aborted by the resolver (its coordinator died); longer than a prepare round
    # (two calls of bank_rpc_timeout_s), so a live coordinator always decides first.
    bank_decision_timeout_s: float = 10.0
    # How often beat runs the resolver (re-sends decisions until every bank acknowledged).
    bank_resolve_interval_s: float = 5.0
    # The bank process (clearhouse-bank): where its SQLite files live, how long a
    # prepared transaction may wait for its decision before the bank aborts it, and
    # how often its cleanup loop looks. The TTL outlives the gateway's decision
    # timeout many times over: a bank that aborted a transaction the gateway decided
    # to commit would break atomicity (a heuristic abort, logged by the resolver).
    bank_data_dir: str = "var/banks"
    # Where a bank listens: loopback unless told (containers: 0.0.0.0).
    bank_listen_addr: str = "127.0.0.1"
    bank_prepare_ttl_s: float = 600.0
    bank_cleanup_interval_s: float = 1.0
    # Latency and failure injection of the bank process (like the card sandbox's):
    # every call of bank_fail_methods (comma list, empty: every protocol call)
    # sleeps bank_latency_ms, then fails UNAVAILABLE with bank_failure_rate.
    bank_latency_ms: int = 0
    bank_failure_rate: float = 0.0
    bank_fail_methods: str = ""

    def __post_init__(self) -> None:
        # The retention floor is enforced here, so from_env (which builds through
        # __init__), direct construction and replace() all agree, and every
        # reader (the API's key lookup, the prune job) gets the floored value.
        if self.idempotency_retention_h < MIN_IDEMPOTENCY_RETENTION_H:
            object.__setattr__(self, "idempotency_retention_h", MIN_IDEMPOTENCY_RETENTION_H)
        for name in _RETENTION_DAYS:
            if getattr(self, name) < MIN_RETENTION_DAYS:
                object.__setattr__(self, name, MIN_RETENTION_DAYS)

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        d = cls()
        card_keys, card_fingerprint_key = _card_keys()
        tls_cert_file, tls_key_file, tls_client_ca_file = _tls_files()
        values = dict(
            environment=_environment("CLEARHOUSE_ENV", d.environment),
            database_url=_str("DATABASE_URL", d.database_url),
            migration_database_url=_str("MIGRATION_DATABASE_URL", d.migration_database_url),
            redis_url=_str("REDIS_URL", d.redis_url),
            redis_key_prefix=_str("REDIS_KEY_PREFIX", d.redis_key_prefix),
            broker_url=_str("BROKER_URL", d.broker_url),
            key_dir=_str("CLEARHOUSE_KEY_DIR", d.key_dir),
            jwt_private_key=_private_pem("JWT_PRIVATE_KEY"),
            operator_jwt_private_key=_private_pem("OPERATOR_JWT_PRIVATE_KEY"),
            card_keys=card_keys,
            card_fingerprint_key=card_fingerprint_key,
            key_reload_interval_s=_float("KEY_RELOAD_INTERVAL_S", d.key_reload_interval_s),
            reencrypt_interval_s=_float("REENCRYPT_INTERVAL_S", d.reencrypt_interval_s),
            reencrypt_batch=max(1, _int("REENCRYPT_BATCH", d.reencrypt_batch)),
            jwt_issuer=_str("JWT_ISSUER", d.jwt_issuer),
            jwt_audience=_str("JWT_AUDIENCE", d.jwt_audience),
            access_token_ttl_s=min(_int("ACCESS_TOKEN_TTL_S", d.access_token_ttl_s), 900),
            operator_jwt_audience=_str("OPERATOR_JWT_AUDIENCE", d.operator_jwt_audience),
            operator_token_ttl_s=min(_int("OPERATOR_TOKEN_TTL_S", d.operator_token_ttl_s), 900),
            operator_session_max_s=_int("OPERATOR_SESSION_MAX_S", d.operator_session_max_s),
            refresh_token_ttl_s=_int("REFRESH_TOKEN_TTL_S", d.refresh_token_ttl_s),
            refresh_family_ttl_s=_int("REFRESH_FAMILY_TTL_S", d.refresh_family_ttl_s),
            acquirer_latency_ms=_int("ACQUIRER_LATENCY_MS", d.acquirer_latency_ms),
            acquirer_failure_rate=_float("ACQUIRER_FAILURE_RATE", d.acquirer_failure_rate),
            auth_max_attempts=_int("AUTH_MAX_ATTEMPTS", d.auth_max_attempts),
            auth_retry_base_s=_float("AUTH_RETRY_BASE_S", d.auth_retry_base_s),
            hold_ttl_s=_int("HOLD_TTL_S", d.hold_ttl_s),
            fraud_block_threshold=_int("FRAUD_BLOCK_THRESHOLD", d.fraud_block_threshold),
            fraud_review_band=_int_in("FRAUD_REVIEW_BAND", d.fraud_review_band, 1, 100),
            batch_max=_int("BATCH_MAX", d.batch_max),
            batch_interval_ms=_int("BATCH_INTERVAL_MS", d.batch_interval_ms),
            fused_stages=fusion.parse(os.environ.get("FUSED_STAGES", fusion.DEFAULT)),
            redrive_after_s=_int("REDRIVE_AFTER_S", d.redrive_after_s),
            redrive_interval_s=_int("REDRIVE_INTERVAL_S", d.redrive_interval_s),
            hold_expiry_interval_s=_int("HOLD_EXPIRY_INTERVAL_S", d.hold_expiry_interval_s),
            idempotency_retention_h=_int("IDEMPOTENCY_RETENTION_H", d.idempotency_retention_h),
            card_retention_days=_int("CARD_RETENTION_DAYS", d.card_retention_days),
            webhook_attempt_retention_days=_int(
                "WEBHOOK_ATTEMPT_RETENTION_DAYS", d.webhook_attempt_retention_days
            ),
            event_retention_days=_int("EVENT_RETENTION_DAYS", d.event_retention_days),
            limit_counter_retention_days=_int(
                "LIMIT_COUNTER_RETENTION_DAYS", d.limit_counter_retention_days
            ),
            refresh_token_retention_days=_int(
                "REFRESH_TOKEN_RETENTION_DAYS", d.refresh_token_retention_days
            ),
            retention_interval_s=_float("RETENTION_INTERVAL_S", d.retention_interval_s),
            retention_batch=max(1, _int("RETENTION_BATCH", d.retention_batch)),
            max_body_bytes=_int("MAX_BODY_BYTES", d.max_body_bytes),
            db_timeouts_api=_timeouts("DB_TIMEOUTS_API", d.db_timeouts_api),
            db_timeouts_worker=_timeouts("DB_TIMEOUTS_WORKER", d.db_timeouts_worker),
            db_timeouts_report=_timeouts("DB_TIMEOUTS_REPORT", d.db_timeouts_report),
            log_level=_str("LOG_LEVEL", d.log_level),
            webhook_timeout_s=_float("WEBHOOK_TIMEOUT_S", d.webhook_timeout_s),
            webhook_max_age_s=_int("WEBHOOK_MAX_AGE_S", d.webhook_max_age_s),
            webhook_schedule_scale=_float("WEBHOOK_SCHEDULE_SCALE", d.webhook_schedule_scale),
            webhook_allow_private=_bool("WEBHOOK_ALLOW_PRIVATE", d.webhook_allow_private),
            webhook_ca_file=_optional_str("WEBHOOK_CA_FILE"),
            webhook_rotation_overlap_h=_int(
                "WEBHOOK_ROTATION_OVERLAP_H", d.webhook_rotation_overlap_h
            ),
            webhook_dispatch_interval_s=_float(
                "WEBHOOK_DISPATCH_INTERVAL_S", d.webhook_dispatch_interval_s
            ),
            webhook_merchant_concurrency=max(
                1, _int("WEBHOOK_MERCHANT_CONCURRENCY", d.webhook_merchant_concurrency)
            ),
            settlement_standard_interval_s=_int(
                "SETTLEMENT_STANDARD_INTERVAL_S", d.settlement_standard_interval_s
            ),
            settlement_economy_interval_s=_int(
                "SETTLEMENT_ECONOMY_INTERVAL_S", d.settlement_economy_interval_s
            ),
            beat_lock_timeout_s=_int("BEAT_LOCK_TIMEOUT_S", d.beat_lock_timeout_s),
            metrics_dir=_str("METRICS_DIR", d.metrics_dir),
            worker_metrics_port=_int("WORKER_METRICS_PORT", d.worker_metrics_port),
            worker_metrics_addr=_host("WORKER_METRICS_ADDR", d.worker_metrics_addr),
            metrics_port=_int("METRICS_PORT", d.metrics_port),
            relay_metrics_port=_int("RELAY_METRICS_PORT", d.relay_metrics_port),
            metrics_addr=_host("METRICS_ADDR", d.metrics_addr),
            heartbeat_file=_optional_str("HEARTBEAT_FILE"),
            rate_limit_per_client=_float("RATE_LIMIT_PER_CLIENT", d.rate_limit_per_client),
            rate_limit_per_ip=_float("RATE_LIMIT_PER_IP", d.rate_limit_per_ip),
            rate_limit_token_per_client=_float(
                "RATE_LIMIT_TOKEN_PER_CLIENT", d.rate_limit_token_per_client
            ),
            rate_limit_token_per_ip=_float("RATE_LIMIT_TOKEN_PER_IP", d.rate_limit_token_per_ip),
            rate_limit_burst_s=_float("RATE_LIMIT_BURST_S", d.rate_limit_burst_s),
            max_backlog=_int("MAX_BACKLOG", d.max_backlog),
            max_queue_wait_ms=_int_in("MAX_QUEUE_WAIT_MS", d.max_queue_wait_ms, 0, 60_000),
            auth_lockout_failures=_int("AUTH_LOCKOUT_FAILURES", d.auth_lockout_failures),
            auth_lockout_window_s=_int("AUTH_LOCKOUT_WINDOW_S", d.auth_lockout_window_s),
            auth_lockout_s=_int("AUTH_LOCKOUT_S", d.auth_lockout_s),
            operator_lockout_failures=_int(
                "OPERATOR_LOCKOUT_FAILURES", d.operator_lockout_failures
            ),
            operator_lockout_window_s=_int(
                "OPERATOR_LOCKOUT_WINDOW_S", d.operator_lockout_window_s
            ),
            operator_lockout_s=_int("OPERATOR_LOCKOUT_S", d.operator_lockout_s),
            tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file,
            tls_client_ca_file=tls_client_ca_file,
            **_anchor(d),
            banks=_banks("BANKS", d.banks),
            bank_token=_str("BANK_TOKEN", d.bank_token),
            bank_rpc_timeout_s=_float("BANK_RPC_TIMEOUT_S", d.bank_rpc_timeout_s),
            bank_decision_timeout_s=_float("BANK_DECISION_TIMEOUT_S", d.bank_decision_timeout_s),
            bank_resolve_interval_s=_float("BANK_RESOLVE_INTERVAL_S", d.bank_resolve_interval_s),
            bank_data_dir=_str("BANK_DATA_DIR", d.bank_data_dir),
            bank_listen_addr=_host("BANK_LISTEN_ADDR", d.bank_listen_addr),
            bank_prepare_ttl_s=_float("BANK_PREPARE_TTL_S", d.bank_prepare_ttl_s),
            bank_cleanup_interval_s=_float("BANK_CLEANUP_INTERVAL_S", d.bank_cleanup_interval_s),
            bank_latency_ms=_int("BANK_LATENCY_MS", d.bank_latency_ms),
            bank_failure_rate=_float("BANK_FAILURE_RATE", d.bank_failure_rate),
            bank_fail_methods=_str("BANK_FAIL_METHODS", d.bank_fail_methods),
        )
        values.update(overrides)
        return cls(**values)

    @property
    def migration_url(self) -> str:
        """Where ``db upgrade`` connects: MIGRATION_DATABASE_URL, else the default above."""
        return self.migration_database_url or with_user(self.database_url)

    @property
    def broker(self) -> str:
        """The Celery broker's URL: BROKER_URL, else the Redis at REDIS_URL."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        """True when the broker is RabbitMQ (amqp:// or amqps://), not Redis."""
        return self.broker.split("://", 1)[0].lower() in AMQP_SCHEMES

    def db_timeouts(self, kind: str) -> tuple[int, int, int]:
        """The Postgres timeouts of one kind of connection: api, worker or report."""
        return getattr(self, f"db_timeouts_{kind}")

    @property
    def bank_addresses(self) -> dict[str, str]:
        """BANKS as {name: host:port}."""
        return dict(parse_banks(self.banks))

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings.from_env()
