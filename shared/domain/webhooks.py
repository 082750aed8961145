"""Webhook signing, the retry schedule and the URL policy (pure: no I/O of its own)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

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
DEFAULT_PORTS = {"http": 80, "https": 443}
# The reason a send records when its host resolves to an address it may not reach.
# It names neither the host nor the address: merchants read it (GET
# /v1/webhook_deliveries), and an internal address is nothing to show them.
TARGET_NOT_ALLOWED = "target address not allowed"

# Special-purpose networks (the IANA IPv4 and IPv6 registries) no webhook may reach.
# ``is_global`` decides first; this list covers what an older Python's tables still
# call global (3.11 says so of 192.0.0.0/24, of multicast, of 64:ff9b::/96 and 2002::/16).
NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT: what is_private misses
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata endpoints
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/8",  # unspecified, loopback, IPv4-compatible and -mapped
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",  # 6to4: reaches whatever IPv4 address it embeds
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",  # multicast
    )
)
# NAT64 (RFC 6052): the IPv4 address in the last 32 bits is the one reached.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Target:
    """Where one send goes: the URL's host name and the vetted addresses it may connect to.

    ``host`` is what the Host header, SNI and the certificate check name (ASCII,
    or an IP literal); ``addresses`` are what the socket connects to, resolved
    once, tried in the resolver's order (as a client does when one is down).
    """

    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == DEFAULT_PORTS[self.scheme] else f"{name}:{self.port}"


def _parse(url: str) -> tuple[SplitResult | None, str]:
    """The URL's parts if its syntax is allowed (http(s), a host, no credentials)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except (ValueError, TypeError, AttributeError):
        return None, "malformed URL"
    if parts.scheme not in DEFAULT_PORTS:
        return None, "scheme must be http or https"
    if not parts.hostname:
        return None, "URL has no host"
    if parts.username is not None or parts.password is not None:
        return None, "credentials in the URL are not allowed"
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        return None, "malformed URL"
    return parts, ""


def _addresses(host: str, resolve: Resolve) -> list[str] | None:
    try:
        return list(resolve(host)) or None
    except (OSError, UnicodeError):
        return None


def url_allowed(url: str, allow_private: bool, resolve: Resolve) -> tuple[bool, str]:
    """Whether a webhook URL may be stored (SSRF policy); (ok, reason if not)."""
    parts, reason = _parse(url)
    if parts is None:
        return False, reason
    if allow_private:
        return True, ""
    host = parts.hostname
    addresses = _addresses(host, resolve)
    if addresses is None:
        return False, f"host {host} does not resolve"
    if not all(is_public(a) for a in addresses):
        return False, f"host {host} resolves to a non-public address"
    return True, ""


def pin(url: str, allow_private: bool, resolve: Resolve) -> tuple[Target | None, str]:
    """Resolve ``url``'s host once and vet every address: where one send connects.

    The send connects only to the addresses returned here and never resolves
    the name again, so DNS that answers differently a moment later (rebinding)
    cannot steer it elsewhere. Any address that is not public refuses the
    whole name: a resolver's order is no protection. (None, reason) when refused.
    """
    parts, reason = _parse(url)
    if parts is None:
        return None, reason
    host = parts.hostname.encode("idna").decode("ascii")
    addresses = _addresses(host, resolve)
    if addresses is None:
        return None, "host does not resolve"
    if not allow_private and not all(is_public(a) for a in addresses):
        return None, TARGET_NOT_ALLOWED
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    return Target(parts.scheme, host, port, tuple(addresses)), ""


def is_public(address: str) -> bool:
    """Whether ``address`` is globally routable (an unparseable one is not)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4-mapped or NAT64 address reaches the IPv4 host it embeds: judge that one.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not any(ip in net for net in NOT_GLOBAL if net.version == ip.version)
