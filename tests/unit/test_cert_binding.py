"""Certificate-bound tokens (RFC 8705 §3): digests, the cnf claim, and the checks."""

from __future__ import annotations

import base64
import hashlib

import pytest

from shared.domain.cert_binding import (
    certificate_sha256,
    confirmation,
    normalize_sha256,
    presented_matches,
    token_matches,
)

DER, OTHER = b"0\x82certificate one", b"0\x82certificate two"
HEX = hashlib.sha256(DER).hexdigest()


def test_the_digest_is_sha256_of_the_der_in_hex_and_any_spelling_of_it_is_one():
    assert certificate_sha256(DER) == HEX
    colons = ":".join(HEX[i : i + 2] for i in range(0, 64, 2)).upper()  # openssl's spelling
    assert normalize_sha256(colons) == normalize_sha256(f" {HEX.upper()} ") == HEX


@pytest.mark.parametrize("bad", ["", "abc", HEX[:-1], HEX + "0", "g" * 64, HEX[:62] + "-1"])
def test_anything_but_64_hex_digits_is_refused(bad):
    with pytest.raises(ValueError, match="64 hex digits"):
        normalize_sha256(bad)


def test_the_cnf_claim_is_the_base64url_sha256_without_padding():
    expected = base64.urlsafe_b64encode(hashlib.sha256(DER).digest()).rstrip(b"=").decode()
    assert confirmation(HEX.upper()) == {"x5t#S256": expected}
    assert "=" not in expected and len(expected) == 43


def test_a_bound_client_must_present_exactly_its_certificate():
    assert presented_matches(HEX, DER)
    assert presented_matches(HEX.upper(), DER)
    assert not presented_matches(HEX, OTHER)
    assert not presented_matches(HEX, None)
    assert not presented_matches(HEX, b"")


def test_a_bound_token_matches_only_its_certificate():
    cnf = confirmation(HEX)
    assert token_matches(cnf, DER)
    assert not token_matches(cnf, OTHER)
    assert not token_matches(cnf, None)
    for bad in (None, "x", {}, {"x5t#S256": 7}, {"x5t#S256": "!!"}, {"x5t": cnf["x5t#S256"]}):
        assert not token_matches(bad, DER), bad
