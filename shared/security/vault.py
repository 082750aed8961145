"""AES-256-GCM encryption with versioned keys, for card numbers and webhook secrets.

Keys come from ``Settings.card_keys`` (env ``CARD_KEYS``: ``v1:<base64 32
bytes>,v2:...``, the last is current) and ``Settings.card_fingerprint_key`` (env
``CARD_FINGERPRINT_KEY``, base64), or else from ``card_keys.json`` in
``Settings.key_dir`` (shared.security.card_ring), generated on first use in
development only. The file is watched: after ``clearhouse keys rotate-card``
every process encrypts under the new version within ``key_reload_interval_s``,
and a ciphertext under a version this process does not know makes it look at
the file again before it fails. Old versions decrypt by their prefix until
``clearhouse keys retire-card`` removes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import Settings, decode_key, parse_card_keys
from shared.security import card_ring, keyfiles
from shared.security.card_ring import KEY_FILE, CardKeys
from shared.security.watch import Fixed, Watched

log = logging.getLogger(__name__)
NONCE_BYTES = 12
TAG_BYTES = 16


class VaultError(Exception):
    """Decryption failed or the key configuration is invalid (never holds plaintext)."""


def _b64key(text: str, what: str, size: int = 32) -> bytes:
    try:
        return decode_key(text, what, size)
    except ValueError as exc:
        raise VaultError(str(exc)) from None


def parse_key_spec(spec: str) -> dict[str, bytes]:
    """Parse ``v1:<b64>,v2:<b64>`` into an ordered {version: key}; the last is current."""
    # The format is the settings' (shared.config checks CARD_KEYS at start);
    # the key file holds the same.
    try:
        return parse_card_keys(spec)
    except ValueError as exc:
        raise VaultError(str(exc)) from None


def generate_key_file() -> bytes:
    """Contents of a fresh card_keys.json: one v1 encryption key and a fingerprint key."""
    return card_ring.dump(card_ring.new_keys(datetime.now(UTC)))


class _Keys:
    """One loaded set of keys: a cipher per version, the current one, the fingerprint key."""

    def __init__(self, keys: CardKeys) -> None:
        if not keys.keys:
            raise VaultError("no card encryption keys configured")
        self.aead = {version: AESGCM(key) for version, key in keys.keys.items()}
        self.current = keys.current
        self.fingerprint_key = keys.fingerprint_key


class Vault:
    """Encrypt/decrypt with versioned AES-256-GCM keys; HMAC fingerprints for PANs."""

    def __init__(
        self,
        keys: Mapping[str, bytes] | None = None,
        fingerprint_key: bytes | None = None,
        *,
        source=None,
    ) -> None:
        # source: a Watched (or Fixed) _Keys; without one the keys given never change.
        if source is None:
            if not keys:
                raise VaultError("no card encryption keys configured")
            source = Fixed(_Keys(CardKeys(dict(keys), fingerprint_key or b"")))
        self._source = source
        self._source.current()

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        """The process-wide vault: the settings' card keys, else those of ``settings.key_dir``."""
        return _cached(
            settings.key_dir,
            settings.card_keys,
            settings.card_fingerprint_key,
            settings.environment == "production",
            settings.key_reload_interval_s,
        )

    @classmethod
    def from_key_dir(cls, key_dir: str, production: bool, interval_s: float, **watch) -> Vault:
        """The vault of ``card_keys.json`` in ``key_dir``, re-read when the file changes."""
        load = lambda: _Keys(load_keys(key_dir, production))  # noqa: E731
        return cls(source=Watched([f"{key_dir}/{KEY_FILE}"], load, interval_s, **watch))

    @property
    def current_version(self) -> str:
        return self._source.current().current

    @property
    def versions(self) -> list[str]:
        """Every version this vault decrypts, oldest first (the last is current)."""
        return list(self._source.current().aead)

    def encrypt(self, plaintext: str, *, aad: str = "") -> str:
        """Encrypt with the current key: ``"<version>:<base64(nonce|ciphertext|tag)>"``."""
        keys = self._source.current()
        # Random 96-bit nonces are safe for ~2**32 messages per key; rotate
        # long before that.
        nonce = os.urandom(NONCE_BYTES)
        sealed = keys.aead[keys.current].encrypt(
            nonce, plaintext.encode("utf-8"), aad.encode("utf-8")
        )
        return f"{keys.current}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, aad: str = "") -> str:
        """Decrypt a token from encrypt(); the version prefix picks the key."""
        version, sep, body = token.partition(":")
        aead = self._source.current().aead.get(version)
        # Written by a process that rotated before this one noticed: look now.
        if sep and aead is None and self._source.refresh():
            aead = self._source.current().aead.get(version)
        if not sep or aead is None:
            raise VaultError("unknown key version")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise VaultError("malformed ciphertext") from None
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise VaultError("malformed ciphertext")
        try:
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode("utf-8"))
        except InvalidTag:
            raise VaultError("ciphertext failed authentication") from None
        return plain.decode("utf-8")

    def reencrypt(self, token: str, *, aad: str = "") -> str:
        """Re-encrypt an older ciphertext under the current key (no-op if already current)."""
        if token.partition(":")[0] == self.current_version:
            return token
        return self.encrypt(self.decrypt(token, aad=aad), aad=aad)

    def fingerprint(self, pan: str) -> str:
        """Stable card fingerprint: HMAC-SHA256 of the normalized PAN, first 32 hex chars."""
        # Keyed, so a leaked fingerprint cannot be brute-forced back to a PAN
        # (card numbers have little entropy); and a separate key, so it stays
        # the same across encryption key rotation.
        key = self._source.current().fingerprint_key
        return hmac.new(key, pan.encode("ascii"), hashlib.sha256).hexdigest()[:32]


_warn_generated = keyfiles.generated_warning(log, "new card encryption keys")


def load_keys(key_dir: str, production: bool) -> CardKeys:
    """``card_keys.json`` of ``key_dir``; missing: generated, or MissingKey in production."""
    data = keyfiles.read(key_dir, KEY_FILE)
    if data is None and production:
        raise keyfiles.MissingKey(
            "no card encryption keys: with CLEARHOUSE_ENV=production keys are never generated;"
            f" set CARD_KEYS and CARD_FINGERPRINT_KEY, or create {KEY_FILE} in"
            f" CLEARHOUSE_KEY_DIR ({key_dir}) with `clearhouse keys init`"
        )
    if data is None:
        data = keyfiles.load_or_create(key_dir, KEY_FILE, generate_key_file, _warn_generated)
    try:
        return card_ring.parse(data)
    except ValueError as exc:
        raise VaultError(str(exc)) from None


@lru_cache(maxsize=16)
def _cached(
    key_dir: str, card_keys: str, fingerprint_key: str, production: bool, interval_s: float
) -> Vault:
    if card_keys or fingerprint_key:
        # Both or neither: fingerprints from per-host generated keys would
        # silently differ between machines and break velocity checks.
        # Settings.from_env refuses this at start; this catches settings built in code.
        if not (card_keys and fingerprint_key):
            raise VaultError("set both CARD_KEYS and CARD_FINGERPRINT_KEY, or neither")
        return Vault(parse_key_spec(card_keys), _b64key(fingerprint_key, "CARD_FINGERPRINT_KEY"))
    return Vault.from_key_dir(key_dir, production, interval_s)
