"""Bytes no request part may carry, refused where the text is read, naming the part."""

from __future__ import annotations

import pytest

from intake import untrusted
from intake.errors import ApiError


def refusal(check, *args) -> tuple[str, str]:
    with pytest.raises(ApiError) as exc:
        check(*args)
    assert (exc.value.status_code, exc.value.api_code) == (400, "parameter_invalid")
    return exc.value.param, exc.value.description


@pytest.mark.parametrize(
    ("body", "param", "what"),
    [
        ({"description": "a\x00b"}, "description", "NUL characters"),
        ({"metadata": {"note": "\ud800"}}, "metadata[note]", "lone surrogates"),
        ({"payment_method": {"card": {"cvc": "1\udfff"}}}, "payment_method[card][cvc]", "lone"),
        ({"items": ["ok", {"x": "\x00"}]}, "items[1][x]", "NUL"),
        ({"metadata": {"k\x00": "v"}}, "metadata", "keys with NUL"),
        ({"\ud800": 1}, "body", "keys with lone surrogates"),
        ("\x00", "body", "NUL"),
        ([["\x00"]], "0[0]", "NUL"),
    ],
)
def test_a_bad_string_anywhere_in_a_body_names_its_field(body, param, what):
    named, detail = refusal(untrusted.check_body, body)
    assert named == param and what in detail
    assert "\x00" not in detail and "\ud800" not in detail  # the bad text is never echoed


def test_good_bodies_and_deep_nesting_pass():
    untrusted.check_body({"a": [1, 2.5, None, True, {"b": "é \ufffd \U0010ffff"}]})
    deep: object = "ok"
    for _ in range(10_000):  # far past Python's recursion limit
        deep = [deep]
    untrusted.check_body(deep)


@pytest.mark.parametrize(
    ("raw", "param", "what"),
    [
        ("limit=10&starting_after=pi_%00", "starting_after", "NUL"),
        ("type=%ff", "type", "invalid UTF-8"),
        ("type=%ed%a0%80", "type", "invalid UTF-8"),  # an encoded surrogate is not UTF-8
        ("type=%e2%82", "type", "invalid UTF-8"),  # truncated
        ("q=\xff", "q", "invalid UTF-8"),  # a raw byte, as WSGI hands it over
        ("q=\ud800", "q", "invalid UTF-8"),  # in-process only
        ("%c3=1", "query", "names that are not valid UTF-8"),
        ("a%00b=1", "query", "names with NUL"),
    ],
)
def test_query_strings_are_decoded_strictly(raw, param, what):
    named, detail = refusal(untrusted.check_pairs, raw, "query")
    assert named == param and what in detail


def test_good_query_strings_pass():
    for raw in ("", "limit=10&status=", "q=%C3%A9+x&flag", "q=\xc3\xa9", "a=b=c", "%"):
        untrusted.check_pairs(raw, "query")


def test_headers_are_named_as_sent():
    assert refusal(untrusted.check_headers, {"HTTP_IDEMPOTENCY_KEY": "k\x00"})[0] == (
        "Idempotency-Key"
    )
    assert refusal(untrusted.check_headers, {"CONTENT_TYPE": "\udc80"})[0] == "Content-Type"
    # Non-headers of the environ and latin-1 text in headers are no concern.
    untrusted.check_headers({"wsgi.input": object(), "HTTP_X_NOTE": "caf\xe9", "PATH_INFO": "\x00"})


def test_a_path_must_be_utf8():
    assert refusal(untrusted.check_path, "/v1/payment_intents/pi_\xff")[0] == "path"
    untrusted.check_path("/v1/payment_intents/pi_\xc3\xa9")  # é, tunnelled as latin-1
