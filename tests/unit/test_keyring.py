"""Key rings: retirement windows (injected clocks), rotating the files, reloading, production."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from shared.config import Settings
from shared.domain import keyring as K
from shared.security import jwt_ring, keyfiles
from shared.security.signing import SigningKeys, generate_pem, load_ring, window_of
from shared.security.vault import Vault, VaultError
from shared.security.watch import Watched
from shared.services import keys as key_service

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AUD, ISS = "clearhouse-api", "clearhouse"
WINDOW = K.Window(token_ttl_s=900, grace_s=7)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def claims() -> dict:
    now = int(time.time())
    return {"sub": "m", "iss": ISS, "aud": AUD, "scope": "payments", "iat": now, "exp": now + 60}


# -- the pure rules --------------------------------------------------------------------


def test_a_retired_key_verifies_for_the_token_lifetime_plus_the_grace_then_drops_out():
    old = K.KeyEntry("old", at(0))
    new = K.KeyEntry("new", at(100))
    ring = K.rotate([old], new, at(100), WINDOW)
    assert [e.kid for e in ring] == ["old", "new"] and ring[0].retired_at == at(100)
    assert K.signer(ring).kid == "new"
    assert WINDOW.verify_until(ring[0]) == at(100 + 907)
    assert [e.kid for e in K.accepted(ring, at(100 + 906.9), WINDOW)] == ["old", "new"]
    assert [e.kid for e in K.accepted(ring, at(100 + 907), WINDOW)] == ["new"]
    assert K.state(ring[0], at(500), WINDOW) == "verifying"
    assert K.state(ring[0], at(2000), WINDOW) == "expired"
    assert K.state(ring[1], at(2000), WINDOW) == "signing"


def test_rotating_again_drops_keys_whose_window_ended_and_keeps_open_ones():
    ring = K.rotate([K.KeyEntry("a", at(0))], K.KeyEntry("b", at(10)), at(10), WINDOW)
    ring = K.rotate(ring, K.KeyEntry("c", at(500)), at(500), WINDOW)
    assert [(e.kid, e.retired_at) for e in ring] == [("a", at(10)), ("b", at(500)), ("c", None)]
    ring = K.rotate(ring, K.KeyEntry("d", at(1000)), at(1000), WINDOW)
    assert [e.kid for e in ring] == ["b", "c", "d"]  # a's window ended at 917
    with pytest.raises(K.KeyRingError, match="already in the ring"):
        K.rotate(ring, K.KeyEntry("d"), at(1001), WINDOW)


def test_a_ring_with_every_key_retired_cannot_sign():
    with pytest.raises(K.KeyRingError, match="no signing key"):
        K.signer([K.KeyEntry("a", at(0), at(1))])


def test_card_versions_advance_past_the_highest_number():
    assert K.next_card_version([]) == "v1"
    assert K.next_card_version(["v1", "v2"]) == "v3"
    assert K.next_card_version(["v9", "legacy", "v2"]) == "v10"


def test_a_card_version_is_retired_only_when_known_not_current_and_unused():
    versions = ["v1", "v2"]
    K.check_card_retirement(versions, "v1", {"payment_intents.card_token": 0})
    with pytest.raises(K.KeyRingError, match="not in the key ring"):
        K.check_card_retirement(versions, "v7", {})
    with pytest.raises(K.KeyRingError, match="current one"):
        K.check_card_retirement(versions, "v2", {})
    with pytest.raises(K.KeyRingError, match="^3 rows still use card key v1") as info:
        K.check_card_retirement(versions, "v1", {"a.x": 2, "b.y": 1, "c.z": 0})
    assert "2 in a.x, 1 in b.y" in str(info.value)


# -- the files, read by a process that keeps running -----------------------------------


class Clock:
    """Wall time for the windows and monotonic time for the reload checks, both by hand."""

    def __init__(self):
        self.now, self.mono = T0, 0.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def settings(tmp_path):
    return Settings().replace(key_dir=str(tmp_path / "keys"), key_reload_interval_s=2.0)


def running_keys(settings, clock: Clock) -> SigningKeys:
    """The API's SigningKeys on the folder, with the test's clocks."""
    paths = [Path(settings.key_dir, n) for n in (jwt_ring.RING_FILE, jwt_ring.LEGACY_FILE)]
    ring = Watched(paths, lambda: load_ring(settings.key_dir, False), 2.0, lambda: clock.mono)
    return SigningKeys(ring, window_of(settings), lambda: clock.now)


def kids(keys: SigningKeys) -> set[str]:
    return {k["kid"] for k in keys.jwks()["keys"]}


def test_after_rotate_jwt_a_running_process_signs_with_the_new_key_and_still_verifies_the_old(
    settings,
):
    clock = Clock()
    key_service.init(settings, clock.now)
    api, other_api = running_keys(settings, clock), running_keys(settings, clock)
    old_kid, old_token = api.kid, api.sign(claims())

    rotated = key_service.rotate_jwt(settings, clock.now)
    assert rotated["retired_kids"] == [old_kid]
    # Before its next check the process still signs with the old key ...
    assert api.kid == old_kid
    # ... but a token from a process that already has the new key verifies at once.
    new_token = jwt_ring_sign(settings, claims())
    assert other_api.verify(new_token, audience=AUD, issuer=ISS)["sub"] == "m"
    clock.advance(2.0)
    assert api.kid == rotated["kid"] != old_kid
    assert jwt.get_unverified_header(api.sign(claims()))["kid"] == rotated["kid"]
    assert kids(api) == {old_kid, rotated["kid"]}
    assert api.verify(old_token, audience=AUD, issuer=ISS)["sub"] == "m"

    # The window: 900 s of token lifetime + the 2 s reload interval + 5 s of clock slack.
    clock.advance(900 + 7 - 2 - 0.5)
    assert old_kid in kids(api)
    clock.advance(0.5)
    assert kids(api) == {rotated["kid"]}
    with pytest.raises(Exception, match="unknown key id"):
        api.verify(old_token, audience=AUD, issuer=ISS)


def jwt_ring_sign(settings, body: dict) -> str:
    """Sign as a process that loads the folder now."""
    ring = load_ring(settings.key_dir, False)
    kid, key = ring.signing_key()
    return jwt.encode(body, key, algorithm="EdDSA", headers={"kid": kid})


def test_the_first_rotation_turns_the_legacy_pem_file_into_a_ring(settings):
    first, second = generate_pem(), generate_pem()
    keyfiles.ensure_dir(settings.key_dir)
    Path(settings.key_dir, jwt_ring.LEGACY_FILE).write_bytes(first + second)
    legacy = SigningKeys.from_pem(first + second)
    out = key_service.rotate_jwt(settings, T0)
    doc = json.loads(Path(settings.key_dir, jwt_ring.RING_FILE).read_text())["keys"]
    # Both legacy keys retired now (no private key kept), the new one signs.
    assert [k["kid"] for k in doc[:2]] == [SigningKeys.from_pem(first).kid, legacy.kid]
    assert all(k["retired_at"] == T0.isoformat() and "private_key" not in k for k in doc[:2])
    assert doc[2]["kid"] == out["kid"] and doc[2]["retired_at"] is None and doc[2]["private_key"]


def test_a_key_file_that_no_longer_parses_keeps_the_keys_in_use(settings, caplog):
    clock = Clock()
    key_service.init(settings, clock.now)
    api = running_keys(settings, clock)
    kid = api.kid
    Path(settings.key_dir, jwt_ring.RING_FILE).write_text("{not json")
    clock.advance(2.0)
    with caplog.at_level(logging.ERROR):
        assert api.kid == kid
    assert "cannot be loaded" in caplog.text


def test_after_rotate_card_a_stale_vault_reloads_for_a_version_it_does_not_know(settings):
    key_service.init(settings, T0)
    # Neither would look at the file again for an hour unless made to.
    worker = Vault.from_key_dir(settings.key_dir, False, 3600.0)
    api = Vault.from_key_dir(settings.key_dir, False, 3600.0)
    old = worker.encrypt("4242424242424242", aad="pi_1")
    assert key_service.rotate_card(settings, T0)["current_version"] == "v2"
    assert api.current_version == "v1"
    assert api._source.refresh() and api.current_version == "v2"
    token = api.encrypt("4000000000000002", aad="pi_2")
    assert token.startswith("v2:")
    # The worker meets v2 before its check is due: it looks at the file, then decrypts.
    assert worker.decrypt(token, aad="pi_2") == "4000000000000002"
    assert worker.reencrypt(old, aad="pi_1").startswith("v2:")
    assert worker.fingerprint("4242424242424242") == api.fingerprint("4242424242424242")
    with pytest.raises(VaultError, match="unknown key version"):
        worker.decrypt("v9:AAAA", aad="pi_1")


# -- production and the environment ----------------------------------------------------


def test_production_never_generates_a_key_and_names_the_settings(settings):
    prod = settings.replace(environment="production")
    with pytest.raises(keyfiles.MissingKey, match="set JWT_PRIVATE_KEY.*CLEARHOUSE_KEY_DIR"):
        SigningKeys.from_settings(prod)
    with pytest.raises(keyfiles.MissingKey, match="set CARD_KEYS and CARD_FINGERPRINT_KEY"):
        Vault.from_settings(prod)
    assert not Path(settings.key_dir).exists() or not list(Path(settings.key_dir).iterdir())
    key_service.init(prod, T0)  # how production gets its keys
    assert SigningKeys.from_settings(prod).kid and Vault.from_settings(prod).current_version == "v1"


def test_development_generates_missing_keys_and_says_so_once(settings, caplog):
    with caplog.at_level(logging.WARNING):
        SigningKeys.from_settings(settings)
        Vault.from_settings(settings)
        load_ring(settings.key_dir, False)  # read again: nothing new to say
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "generated a new JWT signing key" in warnings[0]
    assert "generated new card encryption keys" in warnings[1]


def test_the_environment_setting_is_checked(monkeypatch):
    monkeypatch.setenv("CLEARHOUSE_ENV", "Production")
    assert Settings.from_env().environment == "production"
    monkeypatch.setenv("CLEARHOUSE_ENV", "prod")
    with pytest.raises(ValueError, match="setting CLEARHOUSE_ENV must be one of development"):
        Settings.from_env()


def test_rotations_refuse_keys_given_in_the_environment(settings):
    pem = generate_pem().decode()
    with pytest.raises(key_service.KeysFromEnvironment, match="add the new PRIVATE KEY block"):
        key_service.rotate_jwt(settings.replace(jwt_private_key=pem), T0)
    env_cards = settings.replace(card_keys="v1:" + "A" * 43 + "=", card_fingerprint_key="x")
    with pytest.raises(key_service.KeysFromEnvironment, match="add the new version at its end"):
        key_service.rotate_card(env_cards, T0)
    assert not Path(settings.key_dir).exists()
