"""Webhook signing, the retry schedule and the URL policy (pure: no I/O of its own)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

# First retry after a minute, doubling, each wait capped at 12 h; all inside max_age.
BASE_DELAY_S = 60.0
MAX_DELAY_S = 12 * 3600.0
TOLERANCE_S = 300


def _digest(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secrets: list[str], body: bytes, t: int) -> str:
    """The Clearhouse-Signature header: ``t=<unix>,v1=<hex>`` with one v1 per secret."""
    if not secrets:
        raise ValueError("at least one signing secret is required")
    return ",".join([f"t={t}", *(f"v1={_digest(s, body, t)}" for s in secrets)])


def verify(header: str, body: bytes, secret: str, now: float, tolerance_s=TOLERANCE_S) -> bool:
    """Check a signature header as a receiver does: fresh timestamp, one matching v1."""
    t, candidates = None, []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            t = int(value)
        elif key == "v1":
            candidates.append(value)
    # An old (or future) timestamp means a replayed or forged request.
    if t is None or abs(now - t) > tolerance_s:
        return False
    expected = _digest(secret, body, t)
    # Compare against every candidate so timing says nothing about which matched.
    matches = [hmac.compare_digest(expected, c) for c in candidates]
    return any(matches)


def nominal_delay(attempt: int) -> float:
    """Unscaled wait after the ``attempt``-th failed attempt (1-based), before jitter."""
    return min(BASE_DELAY_S * 2 ** max(attempt - 1, 0), MAX_DELAY_S)


def retry_delays(max_age_s: float, scale: float = 1.0) -> list[float]:
    """The nominal schedule: every wait whose retry still starts within ``max_age_s``."""
    delays, total, attempt = [], 0.0, 1
    while total + nominal_delay(attempt) <= max_age_s:
        total += nominal_delay(attempt)
        delays.append(nominal_delay(attempt) * scale)
        attempt += 1
    return delays


def next_delay(attempt: int, rng: random.Random | None = None, scale: float = 1.0) -> float:
    """Full jitter: uniform in [0, nominal_delay(attempt)] (then scaled).

    Deliveries that failed together (a receiver outage) spread out over the
    whole window instead of coming back as one stampede. The give-up point is
    set by age, not by count, so the shorter average wait only means a few
    more attempts within the same 3 days.
    """
    return (rng or random).uniform(0.0, nominal_delay(attempt)) * scale


Resolve = Callable[[str], Iterable[str]]


def url_allowed(url: str, allow_private: bool, resolve: Resolve) -> tuple[bool, str]:
    """Whether a webhook may be sent to ``url`` (SSRF policy); (ok, reason if not)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False, "malformed URL"
    if parts.scheme not in ("http", "https"):
        return False, "scheme must be http or https"
    if not host:
        return False, "URL has no host"
    if parts.username or parts.password:
        return False, "credentials in the URL are not allowed"
    if allow_private:
        return True, ""
    try:
        addresses = list(resolve(host))
    except OSError:
        return False, f"host {host} does not resolve"
    if not addresses:
        return False, f"host {host} does not resolve"
    for address in addresses:
        if not _public(address):
            return False, f"host {host} resolves to a non-public address"
    return True, ""


def _public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    # An IPv4-mapped IPv6 address reaches the IPv4 host: judge that one.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )
