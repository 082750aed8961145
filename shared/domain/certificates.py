"""Client-certificate fingerprints, as API clients are bound to them."""

from __future__ import annotations

import re

_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_fingerprint(text: str) -> str:
    """A certificate's SHA-256 as 64 lower-case hex digits; colons and case are forgiven."""
    digits = text.strip().replace(":", "").lower()
    if not _HEX64.fullmatch(digits):
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons allowed)")
    return digits
