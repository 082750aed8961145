"""Ed25519 JWT signing keys: sign, verify, and publish them as a JWKS.

Keys come from ``Settings.jwt_private_key`` (env ``JWT_PRIVATE_KEY``, PEM) or
else ``jwt_ed25519.pem`` in ``Settings.key_dir``, generated on first use. Either
may hold several PEM blocks for rotation: the last PRIVATE KEY signs; every key
(including retired PUBLIC KEY blocks) is published and accepted, until it is
removed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat

from shared.config import Settings
from shared.security.keyfiles import load_or_create

KEY_FILE = "jwt_ed25519.pem"
ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["sub", "exp", "iat", "iss", "aud", "scope"]
# Checked in order, most specific first (InvalidSignatureError is a DecodeError).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
)
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


class InvalidToken(Exception):
    """A bearer token was rejected; ``reason`` is safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def thumbprint(public: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: base64url SHA-256 of the canonical required members."""
    # The RFC's canonical form: required OKP members only, sorted, no
    # whitespace (x is base64url, so it needs no JSON escaping).
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{_b64url(_raw(public))}"}}'
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def generate_pem() -> bytes:
    """A fresh Ed25519 private key as unencrypted PKCS#8 PEM."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, serialization.NoEncryption())


class SigningKeys:
    """The current signing key plus every key still accepted for verification."""

    def __init__(
        self,
        private_keys: Sequence[Ed25519PrivateKey],
        public_keys: Sequence[Ed25519PublicKey] = (),
    ) -> None:
        if not private_keys:
            raise ValueError("at least one Ed25519 private key is required")
        self._current = private_keys[-1]
        self.kid = thumbprint(self._current.public_key())
        self._public: dict[str, Ed25519PublicKey] = {}
        for pub in [k.public_key() for k in private_keys] + list(public_keys):
            self._public.setdefault(thumbprint(pub), pub)

    @classmethod
    def from_pem(cls, data: bytes | str) -> SigningKeys:
        """Parse one or more PEM blocks (PRIVATE KEY and PUBLIC KEY) into SigningKeys."""
        # Env vars and secret stores often carry PEM with escaped newlines.
        raw = (data.encode() if isinstance(data, str) else data).replace(b"\\n", b"\n")
        blocks = [(m.group(1) == b"PUBLIC KEY", m.group(0)) for m in _PEM_BLOCK.finditer(raw)]
        public = [serialization.load_pem_public_key(b) for pub, b in blocks if pub]
        private = [serialization.load_pem_private_key(b, None) for pub, b in blocks if not pub]
        if not all(isinstance(k, Ed25519PrivateKey | Ed25519PublicKey) for k in private + public):
            raise ValueError("JWT signing keys must be Ed25519")
        return cls(private, public)

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKeys:
        """Keys from ``settings.jwt_private_key``, else from (or created in) its key_dir."""
        pem = settings.jwt_private_key
        if not pem:
            return _cached(settings.key_dir, "")
        try:
            return _cached(settings.key_dir, pem)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            # Named, so a bad key stops the API at start with a line that says
            # which setting to fix (the messages never quote key material).
            raise ValueError(f"setting JWT_PRIVATE_KEY holds no usable key: {exc}") from None

    def jwks(self) -> dict:
        """The public JWK Set served at /.well-known/jwks.json."""
        jwk = {"kty": "OKP", "crv": "Ed25519", "alg": ALGORITHM, "use": "sig"}
        return {"keys": [{**jwk, "x": _b64url(_raw(p)), "kid": k} for k, p in self._public.items()]}

    def sign(self, claims: dict) -> str:
        """Sign ``claims`` with the current key; the header names its kid."""
        return jwt.encode(claims, self._current, algorithm=ALGORITHM, headers={"kid": self.kid})

    def verify(self, token: str | None, *, audience: str, issuer: str) -> dict:
        """Return the verified claims of ``token`` or raise InvalidToken."""
        if not token or not isinstance(token, str):
            raise InvalidToken("missing token")
        try:
            return jwt.decode(
                token,
                self._key_for(token),
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"missing claim: {exc.claim}") from None
        except jwt.InvalidTokenError as exc:
            reason = next((r for kind, r in _REASONS if isinstance(exc, kind)), "malformed token")
            raise InvalidToken(reason) from None

    def _key_for(self, token: str) -> Ed25519PublicKey:
        header = jwt.get_unverified_header(token)
        # Checked before any key is chosen, so `none` and HMAC-with-public-key
        # forgeries never reach a verifier; jwt.decode's allow-list is a backstop.
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported algorithm")
        key = self._public.get(str(header.get("kid")))
        if key is None:
            raise InvalidToken("unknown key id")
        return key


@lru_cache(maxsize=16)
def _cached(key_dir: str, pem: str) -> SigningKeys:
    # Parsing and thumbprinting on every request would be waste; the key
    # material only changes on restart (or a new key_dir in tests).
    if pem:
        return SigningKeys.from_pem(pem)
    return SigningKeys.from_pem(load_or_create(key_dir, KEY_FILE, generate_pem))
