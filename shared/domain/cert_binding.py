"""Certificate-bound access tokens (RFC 8705 §3), as pure functions.

A client bound to a certificate is known by the SHA-256 of that certificate's
DER bytes (hex, as ``openssl x509 -fingerprint -sha256`` prints it, colons and
case ignored). Its tokens carry the same digest as the confirmation claim
``cnf: {"x5t#S256": <base64url, no padding>}``, and a token with ``cnf`` is good
only over a connection whose peer certificate has that digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

CNF_MEMBER = "x5t#S256"
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def certificate_sha256(der: bytes) -> str:
    """The SHA-256 of a certificate's DER encoding, lowercase hex."""
    return hashlib.sha256(der).hexdigest()


def normalize_sha256(text: str) -> str:
    """``text`` as 64 lowercase hex digits (colons and spaces dropped); ValueError if not one."""
    digest = re.sub(r"[\s:]", "", text).lower()
    if not _HEX_DIGEST.fullmatch(digest):
        raise ValueError("a certificate SHA-256 is 64 hex digits (colons allowed)")
    return digest


def confirmation(sha256_hex: str) -> dict:
    """The ``cnf`` claim of a token bound to the certificate with this SHA-256."""
    raw = bytes.fromhex(normalize_sha256(sha256_hex))
    return {CNF_MEMBER: base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")}


def presented_matches(bound_sha256_hex: str, peer_der: bytes | None) -> bool:
    """True if the connection's peer certificate is the one a client is bound to."""
    if not peer_der:
        return False
    return hmac.compare_digest(certificate_sha256(peer_der), normalize_sha256(bound_sha256_hex))


def token_matches(cnf: object, peer_der: bytes | None) -> bool:
    """True if a token's ``cnf`` claim names the connection's peer certificate."""
    thumbprint = cnf.get(CNF_MEMBER) if isinstance(cnf, dict) else None
    if not isinstance(thumbprint, str) or not peer_der:
        return False
    try:
        bound = base64.urlsafe_b64decode(thumbprint + "=" * (-len(thumbprint) % 4))
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hashlib.sha256(peer_der).digest(), bound)
