"""AES-256-GCM encryption with versioned keys, for card numbers and webhook secrets.

Keys come from ``Settings.card_keys`` (env ``CARD_KEYS``: ``v1:<base64 32
bytes>,v2:...``, the last is current) and ``Settings.card_fingerprint_key`` (env
``CARD_FINGERPRINT_KEY``, base64), or else from ``card_keys.json`` in
``Settings.key_dir``, generated on first use. To rotate, append a version: new
ciphertexts use it, old ones still decrypt by their version prefix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import Settings, decode_key, parse_card_keys
from shared.security.keyfiles import load_or_create

KEY_FILE = "card_keys.json"
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
    doc = {
        "card_keys": "v1:" + base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
        "fingerprint_key": base64.b64encode(os.urandom(32)).decode(),
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


class Vault:
    """Encrypt/decrypt with versioned AES-256-GCM keys; HMAC fingerprints for PANs."""

    def __init__(self, keys: Mapping[str, bytes], fingerprint_key: bytes) -> None:
        if not keys:
            raise VaultError("no card encryption keys configured")
        self._aead = {version: AESGCM(key) for version, key in keys.items()}
        self.current_version = list(keys)[-1]
        self._fp_key = fingerprint_key

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        """The process-wide vault: the settings' card keys, else those of ``settings.key_dir``."""
        return _cached(settings.key_dir, settings.card_keys, settings.card_fingerprint_key)

    def encrypt(self, plaintext: str, *, aad: str = "") -> str:
        """Encrypt with the current key: ``"<version>:<base64(nonce|ciphertext|tag)>"``."""
        # Random 96-bit nonces are safe for ~2**32 messages per key; rotate
        # long before that.
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[self.current_version].encrypt(
            nonce, plaintext.encode("utf-8"), aad.encode("utf-8")
        )
        return f"{self.current_version}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, aad: str = "") -> str:
        """Decrypt a token from encrypt(); the version prefix picks the key."""
        version, sep, body = token.partition(":")
        aead = self._aead.get(version)
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
        return hmac.new(self._fp_key, pan.encode("ascii"), hashlib.sha256).hexdigest()[:32]


@lru_cache(maxsize=16)
def _cached(key_dir: str, card_keys: str, fingerprint_key: str) -> Vault:
    if card_keys or fingerprint_key:
        # Both or neither: fingerprints from per-host generated keys would
        # silently differ between machines and break velocity checks.
        # Settings.from_env refuses this at start; this catches settings built in code.
        if not (card_keys and fingerprint_key):
            raise VaultError("set both CARD_KEYS and CARD_FINGERPRINT_KEY, or neither")
        return Vault(parse_key_spec(card_keys), _b64key(fingerprint_key, "CARD_FINGERPRINT_KEY"))
    try:
        doc = json.loads(load_or_create(key_dir, KEY_FILE, generate_key_file))
        keys, fp = doc["card_keys"], doc["fingerprint_key"]
    except (ValueError, KeyError, TypeError):
        raise VaultError(f"{KEY_FILE} is malformed") from None
    return Vault(parse_key_spec(keys), _b64key(fp, "fingerprint_key"))
