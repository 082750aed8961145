"""Settings: the idempotency retention never goes below the promised 24 h."""

import dataclasses

import pytest

from shared.config import MIN_IDEMPOTENCY_RETENTION_H, Settings


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
