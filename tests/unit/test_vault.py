"""AES-256-GCM vault: roundtrip, tamper detection, rotation, fingerprints, key file race."""

import base64
import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from shared.config import Settings
from shared.security import keyfiles
from shared.security.vault import Vault, VaultError, parse_key_spec

PAN = "4242424242424242"


def key() -> bytes:
    return os.urandom(32)


def spec(**versions: bytes) -> str:
    return ",".join(f"{v}:{base64.b64encode(k).decode()}" for v, k in versions.items())


@pytest.fixture
def settings(tmp_path):
    return Settings().replace(key_dir=str(tmp_path / "keys"))


def test_roundtrip(settings):
    vault = Vault.from_settings(settings)
    token = vault.encrypt(PAN, aad="pi_1")
    assert token.startswith("v1:") and PAN not in token
    assert vault.decrypt(token, aad="pi_1") == PAN
    assert vault.encrypt(PAN, aad="pi_1") != token  # fresh nonce every time
    assert Vault.from_settings(settings) is vault  # cached per key_dir


def test_tamper_detection(settings):
    vault = Vault.from_settings(settings)
    token = vault.encrypt(PAN)
    version, body = token.split(":")
    raw = bytearray(base64.b64decode(body))
    for i in (0, 14, len(raw) - 1):  # nonce, ciphertext, tag
        bad = bytearray(raw)
        bad[i] ^= 1
        with pytest.raises(VaultError, match="authentication"):
            vault.decrypt(f"{version}:{base64.b64encode(bad).decode()}")
    with pytest.raises(VaultError, match="authentication"):
        vault.decrypt(token, aad="another-context")
    for garbage in ("v9:" + body, "nocolon", "v1:!!!", "v1:" + base64.b64encode(b"x").decode()):
        with pytest.raises(VaultError):
            vault.decrypt(garbage)


def test_rotation():
    k1, k2, fp = key(), key(), key()
    v1 = Vault({"v1": k1}, fp)
    old = v1.encrypt(PAN)
    v2 = Vault({"v1": k1, "v2": k2}, fp)
    assert v2.decrypt(old) == PAN
    new = v2.encrypt(PAN)
    assert new.startswith("v2:") and v2.decrypt(new) == PAN
    with pytest.raises(VaultError):
        v1.decrypt(new)
    assert v2.reencrypt(old).startswith("v2:")
    assert v2.fingerprint(PAN) == v1.fingerprint(PAN)


def test_rotation_via_settings(settings):
    k1, k2, fp = key(), key(), base64.b64encode(key()).decode()
    settings = settings.replace(card_fingerprint_key=fp, card_keys=spec(v1=k1))
    old = Vault.from_settings(settings).encrypt(PAN)
    vault = Vault.from_settings(settings.replace(card_keys=spec(v1=k1, v2=k2)))
    assert vault.current_version == "v2"
    assert vault.decrypt(old) == PAN
    assert not os.path.exists(settings.key_dir)  # keys given: no key file


def test_the_vault_never_reads_the_environment(settings, monkeypatch):
    monkeypatch.setenv("CARD_KEYS", spec(v1=key()))
    monkeypatch.setenv("CARD_FINGERPRINT_KEY", base64.b64encode(key()).decode())
    Vault.from_settings(settings)  # from key_dir: the settings hold no card keys
    assert os.path.exists(os.path.join(settings.key_dir, "card_keys.json"))


@pytest.mark.parametrize("given", ["card_keys", "card_fingerprint_key"])
def test_settings_built_in_code_need_both_keys(settings, given):
    value = spec(v1=key()) if given == "card_keys" else base64.b64encode(key()).decode()
    with pytest.raises(VaultError, match="both"):
        Vault.from_settings(settings.replace(**{given: value}))


@pytest.mark.parametrize("bad", ["", "v1", "v1:abc", "v1:" + base64.b64encode(b"short").decode()])
def test_bad_key_spec(bad):
    with pytest.raises(VaultError):
        parse_key_spec(bad)


def test_duplicate_version_rejected():
    with pytest.raises(VaultError, match="twice"):
        parse_key_spec(spec(v1=key()) + "," + spec(v1=key()))


def test_fingerprint_stable(settings):
    vault = Vault.from_settings(settings)
    fp = vault.fingerprint(PAN)
    assert len(fp) == 32 and int(fp, 16) >= 0
    assert fp == vault.fingerprint(PAN)
    assert fp != vault.fingerprint("4000000000000002")
    # A different deployment (different fingerprint key) gets a different value.
    assert Vault({"v1": key()}, key()).fingerprint(PAN) != fp


def test_key_file_contents_and_mode(settings):
    Vault.from_settings(settings)
    path = os.path.join(settings.key_dir, "card_keys.json")
    doc = json.loads(Path(path).read_text())
    assert set(doc) == {"card_keys", "fingerprint_key", "created"}
    assert list(doc["created"]) == ["v1"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.key_dir).st_mode) == 0o700


def _race_worker(key_dir, barrier, results):
    barrier.wait()
    vault = Vault.from_settings(Settings().replace(key_dir=key_dir))
    results.put((vault.fingerprint(PAN), vault.encrypt(PAN)))


def test_key_file_created_once_under_race(tmp_path):
    key_dir = str(tmp_path / "race" / "keys")
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(key_dir, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in range(n)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    # Every process ended up with the same keys as the file now on disk.
    vault = Vault.from_settings(Settings().replace(key_dir=key_dir))
    assert {fp for fp, _ in outcomes} == {vault.fingerprint(PAN)}
    assert all(vault.decrypt(token) == PAN for _, token in outcomes)
    assert os.listdir(key_dir) == ["card_keys.json"]  # no temp files left behind
    assert stat.S_IMODE(os.stat(os.path.join(key_dir, "card_keys.json")).st_mode) == 0o600


def test_load_or_create_returns_existing(tmp_path):
    calls = []

    def factory() -> bytes:
        calls.append(1)
        return b"secret"

    assert keyfiles.load_or_create(tmp_path / "k", "s", factory) == b"secret"
    assert keyfiles.load_or_create(tmp_path / "k", "s", factory) == b"secret"
    assert len(calls) == 1
