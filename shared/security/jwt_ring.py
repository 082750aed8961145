"""The JWT key ring and its files: Ed25519 keys with when each started and stopped signing.

``jwt_keys.json`` in the key folder (written by ``clearhouse keys``)::

    {"keys": [{"kid": "<RFC 7638 thumbprint>", "created_at": "<ISO 8601>",
               "retired_at": null, "private_key": "<PKCS#8 PEM>"},
              {"kid": "...", "created_at": "...", "retired_at": "<ISO 8601>",
               "public_key": "<SPKI PEM>"}]}

The signer is the last key not retired, and the only one whose private key is
kept; a retired key keeps its public key while its window lasts
(shared.domain.keyring). The older formats still load, without times: PEM
blocks in ``jwt_ed25519.pem`` or ``JWT_PRIVATE_KEY`` (the last PRIVATE KEY
signs, every key verifies until it is removed). The first rotation turns
``jwt_ed25519.pem`` into ``jwt_keys.json``, its extra keys retired then.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat

from shared.domain.keyring import KeyEntry, KeyRingError, Window, rotate, signer

RING_FILE = "jwt_keys.json"
# Operator tokens are signed by a ring of their own: a merchant key never signs
# an operator token, and the kids differ.
OPERATOR_RING_FILE = "operator_jwt_keys.json"
LEGACY_FILE = "jwt_ed25519.pem"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def thumbprint(public: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: base64url SHA-256 of the canonical required members."""
    # The RFC's canonical form: required OKP members only, sorted, no
    # whitespace (x is base64url, so it needs no JSON escaping).
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{b64url(raw(public))}"}}'
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def generate_pem() -> bytes:
    """A fresh Ed25519 private key as unencrypted PKCS#8 PEM."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, serialization.NoEncryption())


def _public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def _private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _ed25519(key):
    if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        raise ValueError("JWT signing keys must be Ed25519")
    return key


@dataclass
class Ring:
    """Entries in ring order, and the key objects by kid."""

    entries: list[KeyEntry] = field(default_factory=list)
    private: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    public: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    def add(self, entry: KeyEntry, key: Ed25519PrivateKey | Ed25519PublicKey) -> None:
        if entry.kid in self.public:
            return  # the same key twice (a PEM file may repeat one): keep the first
        if isinstance(key, Ed25519PrivateKey):
            self.private[entry.kid] = key
            key = key.public_key()
        self.public[entry.kid] = key
        self.entries.append(entry)

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        kid = signer(self.entries).kid
        if kid not in self.private:
            raise KeyRingError(f"the signing key {kid} has no private key")
        return kid, self.private[kid]


def from_pem(data: bytes | str) -> Ring:
    """The legacy format: PEM blocks, the last PRIVATE KEY signs, every key verifies."""
    # Env vars and secret stores often carry PEM with escaped newlines.
    text = (data.encode() if isinstance(data, str) else data).replace(b"\\n", b"\n")
    blocks = [(m.group(1) == b"PUBLIC KEY", m.group(0)) for m in _PEM_BLOCK.finditer(text)]
    public = [_ed25519(serialization.load_pem_public_key(b)) for pub, b in blocks if pub]
    private = [
        _ed25519(serialization.load_pem_private_key(b, None)) for pub, b in blocks if not pub
    ]
    if not private:
        raise ValueError("at least one Ed25519 private key is required")
    ring = Ring()
    # Public keys first and the signer last: with no times, the last key that
    # is not retired signs (shared.domain.keyring.signer).
    for key in [*public, *private[:-1], private[-1]]:
        ring.add(KeyEntry(thumbprint(_pub(key))), key)
    return ring


def _pub(key) -> Ed25519PublicKey:
    return key.public_key() if isinstance(key, Ed25519PrivateKey) else key


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def from_json(data: bytes) -> Ring:
    """Parse ``jwt_keys.json``."""
    try:
        items = json.loads(data)["keys"]
        ring = Ring()
        for item in items:
            if item.get("private_key"):
                key = serialization.load_pem_private_key(item["private_key"].encode(), None)
            else:
                key = serialization.load_pem_public_key(item["public_key"].encode())
            created, retired = _time(item.get("created_at")), _time(item.get("retired_at"))
            entry = KeyEntry(item["kid"], created, retired)
            if thumbprint(_pub(_ed25519(key))) != entry.kid:
                raise ValueError(f"key {entry.kid}: kid is not the key's thumbprint")
            ring.add(entry, key)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{RING_FILE} is malformed ({type(exc).__name__})") from None
    signer(ring.entries)  # refuse a ring that cannot sign
    return ring


def to_json(ring: Ring) -> bytes:
    """``jwt_keys.json`` for ``ring``: private keys of signing keys only."""
    items = []
    for e in ring.entries:
        item = {
            "kid": e.kid,
            "created_at": e.created_at.isoformat() if e.created_at else None,
            "retired_at": e.retired_at.isoformat() if e.retired_at else None,
        }
        if e.retired_at is None and e.kid in ring.private:
            item["private_key"] = _private_pem(ring.private[e.kid])
        else:
            item["public_key"] = _public_pem(ring.public[e.kid])
        items.append(item)
    return json.dumps({"keys": items}, indent=2).encode() + b"\n"


def new_ring(now: datetime) -> Ring:
    """A ring of one fresh signing key."""
    ring = Ring()
    key = serialization.load_pem_private_key(generate_pem(), None)
    ring.add(KeyEntry(thumbprint(key.public_key()), now), key)
    return ring


def rotated(ring: Ring, now: datetime, window: Window) -> Ring:
    """``ring`` with a fresh signer; the old ones retired at ``now``, expired ones dropped."""
    fresh = new_ring(now)
    entry = fresh.entries[0]
    out = Ring()
    for e in rotate(ring.entries, entry, now, window):
        out.add(e, fresh.private[e.kid] if e is entry else ring.public[e.kid])
    return out
