"""The operator password policy (shared.domain.passwords) and argon2id hashing."""

from __future__ import annotations

import pytest

from shared.domain import passwords as P
from shared.domain.operators import normalize_email
from shared.security.passwords import hash_password, verify_password

EMAIL = "Ada.Lovelace@example.com"


def test_a_long_uncommon_password_passes():
    P.check("violet-harbour-ninety", EMAIL)


@pytest.mark.parametrize("password", ["", "short", "elevenchars"])
def test_fewer_than_12_characters_is_refused(password):
    with pytest.raises(P.WeakPassword, match="at least 12"):
        P.check(password, EMAIL)


def test_exactly_12_characters_is_enough():
    P.check("zq7-vlm-93kx", EMAIL)


@pytest.mark.parametrize(
    "password", ["ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM", "ada.lovelace"]
)
def test_the_email_or_its_local_part_is_refused_whatever_the_case(password):
    with pytest.raises(P.WeakPassword, match="email"):
        P.check(password, EMAIL)


@pytest.mark.parametrize("password", ["password1234", "Password1234", "QWERTYUIOP123"])
def test_a_common_password_is_refused_whatever_the_case(password):
    with pytest.raises(P.WeakPassword, match="common"):
        P.check(password, EMAIL)


def test_the_shipped_list_has_a_few_hundred_lower_case_entries():
    common = P.common_passwords()
    assert 200 <= len(common) <= 2000
    assert all(entry == entry.lower() and not entry.startswith("#") for entry in common)


def test_the_refusal_never_repeats_the_password():
    with pytest.raises(P.WeakPassword) as refused:
        P.check("password1234", EMAIL)
    assert "password1234" not in str(refused.value)


def test_hashes_are_argon2id_salted_and_verify():
    first, second = hash_password("violet-harbour-ninety"), hash_password("violet-harbour-ninety")
    assert first.startswith("$argon2id$") and first != second
    assert verify_password(first, "violet-harbour-ninety")
    assert not verify_password(first, "violet-harbour-ninetY")
    assert not verify_password("not a hash", "violet-harbour-ninety")


@pytest.mark.parametrize(
    "text", ["", "no-at-sign", "a@b", "two@@example.com", "sp ace@example.com"]
)
def test_not_an_email_address(text):
    assert normalize_email(text) is None


def test_an_email_address_is_trimmed_and_lower_cased():
    assert normalize_email("  Ada@Example.COM ") == "ada@example.com"
