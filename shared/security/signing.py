"""Ed25519 JWT signing keys: sign, verify, and publish them as a JWKS.

Keys come from ``Settings.jwt_private_key`` (env ``JWT_PRIVATE_KEY``, PEM
blocks: the last PRIVATE KEY signs, every key verifies until it is removed)
or else from the key ring in ``Settings.key_dir`` (shared.security.jwt_ring:
``jwt_keys.json``, or the older ``jwt_ed25519.pem``). The files are watched:
after ``clearhouse keys rotate-jwt`` every process signs with the new key
within ``key_reload_interval_s``, and a retired key verifies (and is
published) until every token it signed has expired, then drops out. Missing
files are generated in development only (shared.security.keyfiles.MissingKey).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.config import Settings
from shared.domain.keyring import MAX_ACCESS_TTL_S, KeyRingError, Window, accepted
from shared.security import jwt_ring, keyfiles
from shared.security.jwt_ring import Ring, b64url, generate_pem, raw, thumbprint
from shared.security.watch import Fixed, Watched

__all__ = ["InvalidToken", "SigningKeys", "generate_pem", "thumbprint", "window_of"]

log = logging.getLogger(__name__)
KEY_FILE = jwt_ring.RING_FILE
ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["sub", "exp", "iat", "iss", "aud", "scope"]
# Slack for clocks of the machines sharing a key folder and for a request
# that signed just before its process noticed the rotation.
CLOCK_SLACK_S = 5
# Verified tokens remembered per process (a few bytes each; cleared when full).
VERIFIED_MAX = 10_000
# Checked in order, most specific first (InvalidSignatureError is a DecodeError).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
)


class InvalidToken(Exception):
    """A bearer token was rejected; ``reason`` is safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def window_of(settings: Settings) -> Window:
    """How long a retired key verifies: the token lifetime, the reload lag and clock slack."""
    ttl = min(settings.access_token_ttl_s, MAX_ACCESS_TTL_S)
    return Window(ttl, settings.key_reload_interval_s + CLOCK_SLACK_S)


def _now() -> datetime:
    return datetime.now(UTC)


class SigningKeys:
    """The current signing key plus every key still accepted for verification."""

    def __init__(self, source, window: Window, clock: Callable[[], datetime] = _now) -> None:
        # source: a Fixed or Watched Ring (shared.security.watch).
        self._source, self._window, self._clock = source, window, clock
        # (token, audience, issuer) -> (kid, claims) of tokens verified before.
        self._verified: dict[tuple[str, str, str], tuple[str, dict]] = {}
        source.current().signing_key()  # a ring that cannot sign is refused here

    @classmethod
    def from_pem(cls, data: bytes | str) -> SigningKeys:
        """Parse one or more PEM blocks (PRIVATE KEY and PUBLIC KEY) into SigningKeys."""
        return cls(Fixed(jwt_ring.from_pem(data)), Window(MAX_ACCESS_TTL_S, CLOCK_SLACK_S))

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKeys:
        """Keys from ``settings.jwt_private_key``, else from (or created in) its key_dir."""
        return _cached(
            settings.key_dir,
            settings.jwt_private_key,
            settings.environment == "production",
            window_of(settings),
            settings.key_reload_interval_s,
        )

    @classmethod
    def for_operators(cls, settings: Settings) -> SigningKeys:
        """The operator tokens' keys: ``OPERATOR_JWT_PRIVATE_KEY``, else key_dir's operator ring."""
        return _cached(
            settings.key_dir,
            settings.operator_jwt_private_key,
            settings.environment == "production",
            window_of(settings),
            settings.key_reload_interval_s,
            jwt_ring.OPERATOR_RING_FILE,
        )

    @property
    def kid(self) -> str:
        return self._source.current().signing_key()[0]

    def _accepted(self, ring: Ring) -> dict[str, Ed25519PublicKey]:
        now = self._clock()
        return {e.kid: ring.public[e.kid] for e in accepted(ring.entries, now, self._window)}

    def jwks(self) -> dict:
        """The public JWK Set served at /.well-known/jwks.json."""
        jwk = {"kty": "OKP", "crv": "Ed25519", "alg": ALGORITHM, "use": "sig"}
        keys = self._accepted(self._source.current()).items()
        return {"keys": [{**jwk, "x": b64url(raw(p)), "kid": k} for k, p in keys]}

    def sign(self, claims: dict) -> str:
        """Sign ``claims`` with the current key; the header names its kid."""
        kid, key = self._source.current().signing_key()
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})

    def verify(self, token: str | None, *, audience: str, issuer: str) -> dict:
        """Return the verified claims of ``token`` or raise InvalidToken."""
        if not token or not isinstance(token, str):
            raise InvalidToken("missing token")
        # A client sends one token with every request until it expires: its
        # signature and claims are checked once (about 0.25 ms of CPU, most of it
        # PyJWT's byte-by-byte base64url check), and a later request rechecks
        # only what time can change: expiry, and whether its key is still accepted.
        memo = (token, audience, issuer)
        hit = self._verified.get(memo)
        if hit is not None:
            kid, claims = hit
            if _epoch() >= claims["exp"]:
                self._verified.pop(memo, None)
                raise InvalidToken("token expired")
            if kid in self._accepted(self._source.current()):
                return dict(claims)
            self._verified.pop(memo, None)  # its key has dropped out: refused below
        try:
            kid, key = self._key_for(token)
            claims = jwt.decode(
                token,
                key,
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
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()  # bounded; refilled by the next requests
        self._verified[memo] = (kid, dict(claims))
        return claims

    def _key_for(self, token: str) -> tuple[str, Ed25519PublicKey]:
        header = jwt.get_unverified_header(token)
        # Checked before any key is chosen, so `none` and HMAC-with-public-key
        # forgeries never reach a verifier; jwt.decode's allow-list is a backstop.
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported algorithm")
        kid = str(header.get("kid"))
        key = self._accepted(self._source.current()).get(kid)
        # Another process may sign with a key this one has not loaded yet: look
        # at the files now (one stat when nothing changed) before refusing.
        if key is None and self._source.refresh():
            key = self._accepted(self._source.current()).get(kid)
        if key is None:
            raise InvalidToken("unknown key id")
        return kid, key


def _epoch() -> float:
    # PyJWT's clock for exp (wall time, no leeway): a remembered token expires when it would.
    return time.time()


_warn_generated = keyfiles.generated_warning(log, "a new JWT signing key")


def _setting(ring_file: str) -> str:
    """The environment setting that replaces ``ring_file``."""
    return "JWT_PRIVATE_KEY" if ring_file == jwt_ring.RING_FILE else "OPERATOR_JWT_PRIVATE_KEY"


def load_ring(key_dir: str, production: bool, ring_file: str = jwt_ring.RING_FILE) -> Ring:
    """The ring in ``key_dir``, new format first; missing: generated (development only)."""
    data = keyfiles.read(key_dir, ring_file)
    if data is not None:
        return jwt_ring.from_json(data)
    # Only the merchant ring had a PEM predecessor.
    merchant_ring = ring_file == jwt_ring.RING_FILE
    legacy = keyfiles.read(key_dir, jwt_ring.LEGACY_FILE) if merchant_ring else None
    if legacy is not None:
        return jwt_ring.from_pem(legacy)
    if production:
        setting = _setting(ring_file)
        raise keyfiles.MissingKey(
            "no JWT signing key: with CLEARHOUSE_ENV=production keys are never generated;"
            f" set {setting}, or create {ring_file} in CLEARHOUSE_KEY_DIR"
            f" ({key_dir}) with `clearhouse keys init`"
        )
    fresh = lambda: jwt_ring.to_json(jwt_ring.new_ring(_now()))  # noqa: E731
    data = keyfiles.load_or_create(key_dir, ring_file, fresh, _warn_generated)
    return jwt_ring.from_json(data)


@lru_cache(maxsize=16)
def _cached(
    key_dir: str,
    pem: str,
    production: bool,
    window: Window,
    interval_s: float,
    ring_file: str = jwt_ring.RING_FILE,
):
    # One ring per process and configuration: parsing and thumbprinting on
    # every request would be waste; the watcher re-reads only on change.
    if pem:
        try:
            return SigningKeys(Fixed(jwt_ring.from_pem(pem)), window)
        except (ValueError, TypeError, UnsupportedAlgorithm, KeyRingError) as exc:
            # Named, so a bad key stops the API at start with a line that says
            # which setting to fix (the messages never quote key material).
            raise ValueError(f"setting {_setting(ring_file)} holds no usable key: {exc}") from None
    paths = [f"{key_dir}/{ring_file}"]
    if ring_file == jwt_ring.RING_FILE:
        paths.append(f"{key_dir}/{jwt_ring.LEGACY_FILE}")
    load = lambda: load_ring(key_dir, production, ring_file)  # noqa: E731
    return SigningKeys(Watched(paths, load, interval_s), window)
