"""Settings: the idempotency retention never goes below the promised 24 h; bad values
are refused by name at start; secrets stay out of the repr."""

import base64
import dataclasses
import os

import pytest

from shared.config import MIN_IDEMPOTENCY_RETENTION_H, Settings, url_password, with_user


def test_floor_is_the_promised_24_hours():
    assert MIN_IDEMPOTENCY_RETENTION_H == 24
    assert Settings().idempotency_retention_h == 24


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", 24), ("0", 24), ("-5", 24), ("23", 24), ("24", 24), ("25", 25), ("168", 168)],
)
def test_from_env_floors_idempotency_retention(monkeypatch, raw, expected):
    monkeypatch.setenv("IDEMPOTENCY_RETENTION_H", raw)
    assert Settings.from_env().idempotency_retention_h == expected


def test_from_env_unset_is_the_default(monkeypatch):
    monkeypatch.delenv("IDEMPOTENCY_RETENTION_H", raising=False)
    assert Settings.from_env().idempotency_retention_h == 24


def test_from_env_override_is_floored_too(monkeypatch):
    monkeypatch.delenv("IDEMPOTENCY_RETENTION_H", raising=False)
    assert Settings.from_env(idempotency_retention_h=2).idempotency_retention_h == 24
    assert Settings.from_env(idempotency_retention_h=48).idempotency_retention_h == 48


def test_direct_construction_and_replace_are_floored():
    assert Settings(idempotency_retention_h=1).idempotency_retention_h == 24
    base = Settings(idempotency_retention_h=72)
    assert base.idempotency_retention_h == 72
    assert base.replace(idempotency_retention_h=1).idempotency_retention_h == 24
    assert dataclasses.replace(base, idempotency_retention_h=0).idempotency_retention_h == 24
    # Other settings pass through untouched.
    assert base.replace(hold_ttl_s=5).idempotency_retention_h == 72


def test_settings_stay_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().idempotency_retention_h = 1  # type: ignore[misc]


def test_db_timeouts_are_read_per_kind_and_bad_values_refused(monkeypatch):
    import pytest

    from shared.config import Settings

    monkeypatch.setenv("DB_TIMEOUTS_API", "100,200,300")
    s = Settings.from_env()
    assert s.db_timeouts("api") == (100, 200, 300)
    assert s.db_timeouts("worker") == Settings().db_timeouts_worker
    for bad in ("1,2", "a,b,c", "1,2,-3"):
        monkeypatch.setenv("DB_TIMEOUTS_API", bad)
        with pytest.raises(ValueError, match="DB_TIMEOUTS_API"):
            Settings.from_env()


# -- the fields that replaced direct reads of the environment ----------------

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (a value to parse, nothing binds it)
SECRETS = ("JWT_PRIVATE_KEY", "CARD_KEYS", "CARD_FINGERPRINT_KEY")
NEW = ("WORKER_METRICS_ADDR", "HEARTBEAT_FILE", *SECRETS)


@pytest.fixture
def clean_env(monkeypatch):
    for name in NEW:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _b64(raw: bytes | None = None) -> str:
    return base64.b64encode(os.urandom(32) if raw is None else raw).decode()


def _pem() -> str:
    from shared.security.signing import generate_pem

    return generate_pem().decode()


def test_the_new_fields_default_to_todays_behaviour(clean_env):
    for s in (Settings(), Settings.from_env()):
        assert s.worker_metrics_addr == "127.0.0.1"  # loopback unless told
        assert s.heartbeat_file is None  # no liveness file
        # No keys given: they come from (or are generated in) key_dir.
        assert (s.jwt_private_key, s.card_keys, s.card_fingerprint_key) == ("", "", "")


def test_the_new_fields_are_read_from_the_environment(clean_env):
    pem, keys, fp = _pem(), f"v1:{_b64()},v2:{_b64()}", _b64()
    clean_env.setenv("WORKER_METRICS_ADDR", ALL_INTERFACES)
    clean_env.setenv("HEARTBEAT_FILE", "/run/clearhouse-relay/alive")
    clean_env.setenv("JWT_PRIVATE_KEY", pem)
    clean_env.setenv("CARD_KEYS", keys)
    clean_env.setenv("CARD_FINGERPRINT_KEY", fp)
    s = Settings.from_env()
    assert s.worker_metrics_addr == ALL_INTERFACES
    assert s.heartbeat_file == "/run/clearhouse-relay/alive"
    assert (s.jwt_private_key, s.card_keys, s.card_fingerprint_key) == (pem, keys, fp)


def test_empty_values_mean_unset(clean_env):
    for name in NEW:
        clean_env.setenv(name, "")
    s = Settings.from_env()
    assert (s.worker_metrics_addr, s.heartbeat_file, s.card_keys) == ("127.0.0.1", None, "")


@pytest.mark.parametrize(
    "addr", ["127.0.0.1", ALL_INTERFACES, "::", "::1", "localhost", "metrics.internal"]
)
def test_worker_metrics_addr_takes_an_ip_or_a_host_name(clean_env, addr):
    clean_env.setenv("WORKER_METRICS_ADDR", addr)
    assert Settings.from_env().worker_metrics_addr == addr


@pytest.mark.parametrize(
    "addr", ["0.0.0.0:9808", "127.0.0.256", "http://0.0.0.0", "a b", "-host", "[::]", " "]
)
def test_a_bad_worker_metrics_addr_is_refused_by_name(clean_env, addr):
    clean_env.setenv("WORKER_METRICS_ADDR", addr)
    with pytest.raises(ValueError, match="setting WORKER_METRICS_ADDR must be an IP address"):
        Settings.from_env()


def test_the_secrets_stay_out_of_the_repr(clean_env):
    pem, keys, fp = _pem(), f"v1:{_b64()}", _b64()
    clean_env.setenv("JWT_PRIVATE_KEY", pem)
    clean_env.setenv("CARD_KEYS", keys)
    clean_env.setenv("CARD_FINGERPRINT_KEY", fp)
    s = Settings.from_env()
    for text in (repr(s), str(s), repr(s.replace(log_level="DEBUG"))):
        for secret in (keys, fp, keys.partition(":")[2], pem.splitlines()[1]):
            assert secret not in text
        for name in ("jwt_private_key", "card_keys", "card_fingerprint_key"):
            assert name not in text
        assert "key_dir=" in text  # the rest is shown as before


K1, K2, FP = _b64(b"\x01" * 32), _b64(b"\x02" * 32), _b64(b"\x03" * 32)
SHORT, FP31 = _b64(b"\x04" * 16), _b64(b"\x05" * 31)


@pytest.mark.parametrize(
    ("keys", "fingerprint", "message"),
    [
        (f"v1:{K1}", None, "set both CARD_KEYS and CARD_FINGERPRINT_KEY"),
        (None, FP, "set both CARD_KEYS and CARD_FINGERPRINT_KEY"),
        (K1, FP, "setting CARD_KEYS is invalid: card keys must look like"),
        ("v1:!!notbase64", FP, "setting CARD_KEYS is invalid: card key v1 is not valid base64"),
        (f"v1:{SHORT}", FP, "setting CARD_KEYS is invalid: card key v1 must be 32 bytes"),
        (f"v1:{K1},v1:{K2}", FP, "setting CARD_KEYS is invalid: .* appears twice"),
        (" , ", FP, "setting CARD_KEYS is invalid: no card encryption keys"),
        (f"v1:{K1}", "!!", "setting CARD_FINGERPRINT_KEY is not valid base64"),
        (f"v1:{K1}", FP31, "setting CARD_FINGERPRINT_KEY must be 32 bytes, got 31"),
    ],
    ids=[
        "keys-only",
        "fingerprint-only",
        "no-version",
        "bad-base64",
        "short-key",
        "twice",
        "empty-list",
        "bad-fingerprint",
        "short-fingerprint",
    ],
)
def test_bad_card_keys_are_refused_at_start_without_quoting_them(
    clean_env, keys, fingerprint, message
):
    for name, value in (("CARD_KEYS", keys), ("CARD_FINGERPRINT_KEY", fingerprint)):
        if value is not None:
            clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=message) as info:
        Settings.from_env()
    for secret in (K1, K2, FP, SHORT, FP31):
        assert secret not in str(info.value)


@pytest.mark.parametrize(
    "pem",
    [
        "not a pem",
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",  # no private
        "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQA",  # cut short
    ],
)
def test_a_jwt_private_key_without_a_private_pem_block_is_refused_by_name(clean_env, pem):
    clean_env.setenv("JWT_PRIVATE_KEY", pem)
    with pytest.raises(ValueError, match="setting JWT_PRIVATE_KEY must hold PEM blocks") as info:
        Settings.from_env()
    assert "MIIB" not in str(info.value) and "MC4C" not in str(info.value)


def test_a_jwt_private_key_with_escaped_newlines_is_accepted(clean_env):
    pem = _pem()
    clean_env.setenv("JWT_PRIVATE_KEY", pem.replace("\n", "\\n"))
    assert Settings.from_env().jwt_private_key == pem.replace("\n", "\\n")


def test_the_operator_ports_default_to_loopback_and_are_read_from_the_environment(monkeypatch):
    for name in ("METRICS_PORT", "RELAY_METRICS_PORT", "METRICS_ADDR"):
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert (s.metrics_port, s.relay_metrics_port, s.metrics_addr) == (9807, 9806, "127.0.0.1")
    monkeypatch.setenv("METRICS_PORT", "0")
    monkeypatch.setenv("RELAY_METRICS_PORT", "19806")
    monkeypatch.setenv("METRICS_ADDR", ALL_INTERFACES)
    s = Settings.from_env()
    assert (s.metrics_port, s.relay_metrics_port, s.metrics_addr) == (0, 19806, ALL_INTERFACES)
    monkeypatch.setenv("METRICS_ADDR", "0.0.0.0:9807")
    with pytest.raises(ValueError, match="setting METRICS_ADDR must be an IP address"):
        Settings.from_env()
    monkeypatch.setenv("METRICS_ADDR", "127.0.0.1")
    monkeypatch.setenv("METRICS_PORT", "nine")
    with pytest.raises(ValueError, match="setting METRICS_PORT must be an integer"):
        Settings.from_env()


def test_the_migration_url_defaults_to_database_urls_server_as_postgres(clean_env):
    clean_env.delenv("MIGRATION_DATABASE_URL", raising=False)
    clean_env.setenv("DATABASE_URL", "postgresql+psycopg2://clearhouse_app:pw@db.internal:6543/ch")
    s = Settings.from_env()
    assert s.migration_database_url == ""
    assert s.migration_url == "postgresql+psycopg2://postgres@db.internal:6543/ch"
    assert "pw" not in s.migration_url  # the app's password is never the superuser's
    assert Settings().migration_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/clearhouse"
    assert Settings().database_url.startswith("postgresql+psycopg2://clearhouse_app@")
    clean_env.setenv("MIGRATION_DATABASE_URL", "postgresql://clearhouse_owner:x@h/ch")
    s = Settings.from_env()
    assert s.migration_url == "postgresql://clearhouse_owner:x@h/ch"
    assert ":x@" not in repr(s) and ":pw@" not in repr(s)  # the URLs may carry passwords


def test_the_app_password_is_taken_only_from_the_app_roles_url():
    assert url_password("postgresql://clearhouse_app:s3cr%40t@h/d", "clearhouse_app") == "s3cr@t"
    assert url_password("postgresql://postgres:postgres@h/d", "clearhouse_app") is None
    assert url_password("postgresql://clearhouse_app@h/d", "clearhouse_app") is None
    assert with_user("postgresql://a:b@[::1]:5/d", "x") == "postgresql://x@[::1]:5/d"


def test_retention_settings_default_read_and_floor(monkeypatch):
    d = Settings()
    assert (d.card_retention_days, d.webhook_attempt_retention_days) == (30, 30)
    assert (d.event_retention_days, d.retention_interval_s, d.retention_batch) == (90, 3600.0, 200)
    monkeypatch.setenv("CARD_RETENTION_DAYS", "7")
    monkeypatch.setenv("WEBHOOK_ATTEMPT_RETENTION_DAYS", "0")
    monkeypatch.setenv("EVENT_RETENTION_DAYS", "-3")
    monkeypatch.setenv("RETENTION_BATCH", "0")
    s = Settings.from_env()
    assert s.card_retention_days == 7
    # Where the setting is read: no retention shorter than a day, no empty batch.
    assert s.webhook_attempt_retention_days == s.event_retention_days == 1
    assert s.retention_batch == 1
    assert Settings(card_retention_days=0).card_retention_days == 1
    assert (d.limit_counter_retention_days, d.refresh_token_retention_days) == (2, 7)
    assert Settings(limit_counter_retention_days=0).limit_counter_retention_days == 1
    assert Settings(refresh_token_retention_days=-1).refresh_token_retention_days == 1


def test_the_review_band_is_read_and_kept_from_1_to_100(monkeypatch):
    monkeypatch.delenv("FRAUD_REVIEW_BAND", raising=False)
    assert Settings.from_env().fraud_review_band == 10
    for raw, expected in (("1", 1), ("25", 25), ("100", 100)):
        monkeypatch.setenv("FRAUD_REVIEW_BAND", raw)
        assert Settings.from_env().fraud_review_band == expected
    for bad in ("0", "-3", "101"):
        monkeypatch.setenv("FRAUD_REVIEW_BAND", bad)
        with pytest.raises(
            ValueError, match=f"setting FRAUD_REVIEW_BAND must be from 1 to 100, got {bad}"
        ):
            Settings.from_env()
    monkeypatch.setenv("FRAUD_REVIEW_BAND", "ten")
    with pytest.raises(ValueError, match="setting FRAUD_REVIEW_BAND must be an integer"):
        Settings.from_env()
