"""Key rings: which JWT keys sign and verify when, and how card key versions advance.

Pure: entries carry ids and times, never key material; the caller passes the
clock (``now``) so retirement windows are tested without waiting.

A JWT key that stopped signing at ``retired_at`` must still verify every token
it signed. The last one may have been signed ``grace_s`` after retirement (a
process signs with the old key until it notices the new file) and lives
``token_ttl_s``: so the key verifies until ``retired_at + grace_s +
token_ttl_s``, then drops out of the JWKS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

# Hard ceiling on an access token's lifetime whatever the settings say: a
# leaked one cannot be revoked, so its lifetime is the damage window.
MAX_ACCESS_TTL_S = 900


class KeyRingError(ValueError):
    """A key ring operation that must not happen (the message says why)."""


@dataclass(frozen=True)
class KeyEntry:
    kid: str
    created_at: datetime | None = None
    # When it stopped signing; None: it is (or, in a legacy file, may be) the signer.
    retired_at: datetime | None = None


@dataclass(frozen=True)
class Window:
    """How long a retired key keeps verifying: tokens' lifetime plus the reload lag."""

    token_ttl_s: int
    grace_s: float

    def verify_until(self, entry: KeyEntry) -> datetime | None:
        """The end of ``entry``'s verification window (None: no end, it signs)."""
        if entry.retired_at is None:
            return None
        return entry.retired_at + timedelta(seconds=self.token_ttl_s + self.grace_s)

    def accepts(self, entry: KeyEntry, now: datetime) -> bool:
        """True while ``entry`` verifies tokens (and is published)."""
        until = self.verify_until(entry)
        return until is None or now < until


def signer(entries: Sequence[KeyEntry]) -> KeyEntry:
    """The key that signs: the last one not retired."""
    active = [e for e in entries if e.retired_at is None]
    if not active:
        raise KeyRingError("the key ring has no signing key (every key is retired)")
    return active[-1]


def accepted(entries: Iterable[KeyEntry], now: datetime, window: Window) -> list[KeyEntry]:
    """The entries that verify tokens at ``now``, in ring order."""
    return [e for e in entries if window.accepts(e, now)]


def rotate(
    entries: Sequence[KeyEntry], new: KeyEntry, now: datetime, window: Window
) -> list[KeyEntry]:
    """Retire every signing key at ``now``, drop those whose window has ended, add ``new``."""
    if any(e.kid == new.kid for e in entries):
        raise KeyRingError(f"key {new.kid} is already in the ring")
    retired = [e if e.retired_at else replace(e, retired_at=now) for e in entries]
    return [*accepted(retired, now, window), new]


def state(entry: KeyEntry, now: datetime, window: Window) -> str:
    """``signing``, ``verifying`` (retired, window open) or ``expired``."""
    if entry.retired_at is None:
        return "signing"
    return "verifying" if window.accepts(entry, now) else "expired"


_NUMBERED = re.compile(r"^v(\d+)$")


def next_card_version(versions: Iterable[str]) -> str:
    """The version after every existing one: ``v<highest number + 1>``."""
    numbers = [int(m.group(1)) for v in versions if (m := _NUMBERED.match(v))]
    return f"v{max(numbers, default=0) + 1}"


def check_card_retirement(
    versions: Sequence[str], version: str, rows_using: Mapping[str, int]
) -> None:
    """Refuse to drop ``version`` unless it exists, is not current and protects no row."""
    if version not in versions:
        known = ", ".join(versions)
        raise KeyRingError(f"card key {version} is not in the key ring (it has {known})")
    if version == versions[-1]:
        raise KeyRingError(
            f"card key {version} is the current one: rotate first (clearhouse keys rotate-card)"
        )
    using = sum(rows_using.values())
    if using:
        where = ", ".join(f"{n} in {col}" for col, n in rows_using.items() if n)
        raise KeyRingError(
            f"{using} rows still use card key {version} ({where}); wait for the re-encrypt"
            " job (clearhouse keys status shows its progress)"
        )
