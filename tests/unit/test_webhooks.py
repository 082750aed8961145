"""Webhook signing, retry schedule and URL policy (pure)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random

import pytest

from shared.domain import webhooks as W

BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
T = 1_700_000_000


def test_signature_is_hmac_sha256_of_t_dot_body():
    header = W.sign(["whsec_a"], BODY, T)
    expected = hmac.new(b"whsec_a", f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"
    assert W.verify(header, BODY, "whsec_a", now=T)


def test_rotation_signs_with_each_secret_and_each_verifies():
    header = W.sign(["whsec_new", "whsec_old"], BODY, T)
    assert header.count("v1=") == 2
    assert W.verify(header, BODY, "whsec_new", now=T)
    assert W.verify(header, BODY, "whsec_old", now=T)
    assert not W.verify(header, BODY, "whsec_other", now=T)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_stale_or_future_timestamps_are_rejected(skew):
    header = W.sign(["s"], BODY, T)
    assert W.verify(header, BODY, "s", now=T + 300)
    assert not W.verify(header, BODY, "s", now=T + skew)


def test_tampering_is_rejected():
    header = W.sign(["s"], BODY, T)
    assert not W.verify(header, BODY + b" ", "s", now=T)
    forged_t = header.replace(f"t={T}", f"t={T + 1}")
    assert not W.verify(forged_t, BODY, "s", now=T)
    for bad in ("", "garbage", f"t={T}", "v1=abc", f"t=x,v1={'0' * 64}"):
        assert not W.verify(bad, BODY, "s", now=T)


def test_sign_needs_a_secret():
    with pytest.raises(ValueError):
        W.sign([], BODY, T)


def test_retry_schedule_is_exponential_and_fits_in_three_days():
    three_days = 3 * 24 * 3600
    delays = W.retry_delays(three_days)
    assert delays[:4] == [60, 120, 240, 480]
    assert sum(delays) <= three_days
    assert max(delays) == W.MAX_DELAY_S
    assert len(delays) >= 10
    scaled = W.retry_delays(three_days, scale=0.001)
    assert scaled == pytest.approx([d * 0.001 for d in delays])


def test_full_jitter_stays_within_the_nominal_wait():
    rng = random.Random(7)
    for attempt in range(1, 20):
        samples = [W.next_delay(attempt, rng) for _ in range(200)]
        assert all(0 <= s <= W.nominal_delay(attempt) for s in samples)
        # Spread over the whole window, not bunched at its end.
        assert min(samples) < W.nominal_delay(attempt) * 0.1
        assert max(samples) > W.nominal_delay(attempt) * 0.9
    assert W.next_delay(3, random.Random(1), scale=0.001) <= 0.24


def _resolver(table):
    def resolve(host):
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


PUBLIC = _resolver(
    {
        "hooks.example.com": ["93.184.216.34"],
        "both.example.com": ["93.184.216.34", "10.0.0.5"],
        "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
        "mapped.example.com": ["::ffff:127.0.0.1"],
        "meta.example.com": ["169.254.169.254"],
        "empty.example.com": [],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/wh",
        "http://hooks.example.com:8080/x?y=1",
        "https://v6.example.com",
    ],
)
def test_public_http_urls_are_allowed(url):
    assert W.url_allowed(url, False, PUBLIC) == (True, "")


@pytest.mark.parametrize(
    "url,reason",
    [
        ("ftp://hooks.example.com/", "scheme"),
        ("hooks.example.com/wh", "scheme"),
        ("https:///nohost", "no host"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("http://127.0.0.1:8000/", "non-public"),
        ("http://localhost/", "does not resolve"),
        ("http://10.1.2.3/", "non-public"),
        ("http://192.168.1.1/", "non-public"),
        ("http://[::1]/", "non-public"),
        ("http://0.0.0.0/", "non-public"),
        ("http://224.0.0.1/", "non-public"),
        ("https://meta.example.com/", "non-public"),
        ("https://both.example.com/", "non-public"),
        ("https://mapped.example.com/", "non-public"),
        ("https://empty.example.com/", "does not resolve"),
        ("https://nxdomain.example.com/", "does not resolve"),
        ("http://hooks.example.com:99999/", "malformed"),
    ],
)
def test_private_and_malformed_urls_are_refused(url, reason):
    ok, why = W.url_allowed(url, False, RESOLVE)
    assert not ok
    assert reason in why


def test_private_urls_are_allowed_when_the_setting_says_so():
    assert W.url_allowed("http://127.0.0.1:9000/hooks", True, PUBLIC) == (True, "")
    # Still http(s) only.
    assert not W.url_allowed("file:///etc/passwd", True, PUBLIC)[0]


def _literal(host):
    # An IP literal "resolves" to itself, as getaddrinfo does.
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        raise OSError("not a literal") from None


def _chain(*resolvers):
    def resolve(host):
        for r in resolvers:
            try:
                return r(host)
            except OSError:
                continue
        raise OSError("no such host")

    return resolve


RESOLVE = _chain(_literal, PUBLIC)


@pytest.mark.parametrize(
    "address",
    [
        "100.64.0.1",  # carrier-grade NAT: not private, not global either
        "100.127.255.254",
        "192.0.0.8",  # IETF protocol assignments (3.11's is_global says global)
        "0.0.0.0",  # noqa: S104 (an address judged, nothing binds it)
        "224.0.0.1",  # multicast (3.11's is_global says global)
        "239.255.255.250",
        "255.255.255.255",
        "198.18.0.1",
        "::ffff:127.0.0.1",  # IPv4-mapped: judged as the IPv4 address it reaches
        "::ffff:100.64.0.1",
        "64:ff9b::7f00:1",  # NAT64 to 127.0.0.1
        "2002:7f00:1::",  # 6to4
        "ff0e::1",
        "fe80::1%eth0",
        "fc00::1",
        "::",
        "not-an-ip",
    ],
)
def test_only_globally_routable_addresses_are_public(address):
    assert not W.is_public(address)


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1", "::ffff:93.184.216.34"]
)
def test_global_addresses_are_public(address):
    assert W.is_public(address)


def test_pin_resolves_once_and_keeps_every_vetted_address_in_order():
    lookups = []

    def resolve(host):
        lookups.append(host)
        return ["93.184.216.34", "2606:2800:220:1::1"]

    target, why = W.pin("https://Hooks.Example.com:8443/wh?x=1", False, resolve)
    assert why == "" and lookups == ["hooks.example.com"]
    addresses = ("93.184.216.34", "2606:2800:220:1::1")
    assert target == W.Target("https", "hooks.example.com", 8443, addresses)
    assert target.host_header == "hooks.example.com:8443"


def test_pin_refuses_a_name_with_any_address_that_is_not_public():
    both = _resolver({"h.example": ["93.184.216.34", "100.64.0.1"]})
    assert W.pin("http://h.example/", False, both) == (None, "target address not allowed")
    # Allowed private targets are still pinned to the addresses resolved once.
    target, _ = W.pin("http://h.example/", True, both)
    assert target.addresses == ("93.184.216.34", "100.64.0.1")
    assert target.host_header == "h.example"


def test_pin_says_why_without_naming_the_host():
    assert W.pin("http://nxdomain.example/", False, PUBLIC) == (None, "host does not resolve")
    assert W.pin("http://empty.example.com/", True, PUBLIC) == (None, "host does not resolve")
    assert W.pin("ftp://hooks.example.com/", True, PUBLIC) == (None, "scheme must be http or https")
    assert W.pin("http://a..b/", True, PUBLIC) == (None, "malformed URL")


def test_host_headers_name_the_url_host():
    assert W.Target("http", "h.example", 80, ("1.1.1.1",)).host_header == "h.example"
    assert W.Target("https", "h.example", 443, ("1.1.1.1",)).host_header == "h.example"
    assert W.Target("http", "h.example", 443, ("1.1.1.1",)).host_header == "h.example:443"
    v6 = W.Target("https", "2606:2800:220:1::1", 8443, ("2606:2800:220:1::1",))
    assert v6.host_header == "[2606:2800:220:1::1]:8443"
    idn, _ = W.pin("http://bücher.example/", True, lambda host: ["93.184.216.34"])
    assert idn.host == "xn--bcher-kva.example"
