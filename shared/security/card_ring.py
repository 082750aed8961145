"""The card key file, ``card_keys.json``: versioned AES-256-GCM keys and the fingerprint key.

::

    {"card_keys": "v1:<base64 32 bytes>,v2:...", "fingerprint_key": "<base64 32 bytes>",
     "created": {"v1": "<ISO 8601>", "v2": "..."}}

``card_keys`` has the format of the ``CARD_KEYS`` setting (the last version is
current); ``created`` is optional (files written before rotation existed have
none). The fingerprint key never changes: fingerprints must stay comparable
across rotations (velocity checks, blocklists).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import decode_key, parse_card_keys
from shared.domain.keyring import KeyRingError, next_card_version

KEY_FILE = "card_keys.json"


@dataclass(frozen=True)
class CardKeys:
    keys: dict[str, bytes]
    fingerprint_key: bytes
    created: dict[str, str] = field(default_factory=dict)

    @property
    def current(self) -> str:
        return list(self.keys)[-1]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_keys(now: datetime) -> CardKeys:
    """One fresh v1 encryption key and a fingerprint key."""
    return CardKeys(
        {"v1": AESGCM.generate_key(bit_length=256)}, os.urandom(32), {"v1": now.isoformat()}
    )


def parse(data: bytes) -> CardKeys:
    """Parse ``card_keys.json`` (ValueError naming the file when it is malformed)."""
    try:
        doc = json.loads(data)
        keys = parse_card_keys(doc["card_keys"])
        fingerprint = decode_key(doc["fingerprint_key"], "fingerprint_key")
        created = {str(k): str(v) for k, v in (doc.get("created") or {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{KEY_FILE} is malformed ({exc})") from None
    return CardKeys(keys, fingerprint, created)


def dump(keys: CardKeys) -> bytes:
    doc = {
        "card_keys": ",".join(f"{v}:{_b64(k)}" for v, k in keys.keys.items()),
        "fingerprint_key": _b64(keys.fingerprint_key),
        "created": {v: t for v, t in keys.created.items() if v in keys.keys},
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def rotated(keys: CardKeys, now: datetime) -> CardKeys:
    """``keys`` with a new current version after every existing one."""
    version = next_card_version(keys.keys)
    return CardKeys(
        {**keys.keys, version: AESGCM.generate_key(bit_length=256)},
        keys.fingerprint_key,
        {**keys.created, version: now.isoformat()},
    )


def without(keys: CardKeys, version: str) -> CardKeys:
    """``keys`` without ``version`` (the caller has checked no row uses it)."""
    if version not in keys.keys or version == keys.current:
        raise KeyRingError(f"card key {version} cannot be removed")
    rest = {v: k for v, k in keys.keys.items() if v != version}
    return CardKeys(rest, keys.fingerprint_key, dict(keys.created))
