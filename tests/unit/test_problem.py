"""Problem+json shaping, request-id sanitizing and body parsing: pure pieces of the intake."""

import falcon
import pytest

from intake.errors import ApiError, problem, problem_for
from intake.middleware import parse_form, parse_json, sanitize_request_id
from shared.domain.validation import ValidationError
from shared.services.auth import InvalidClient
from shared.services.errors import NotFound
from shared.services.idempotency import check_key, request_hash


def test_problem_has_rfc9457_members_and_extensions_never_override():
    body = problem(400, "invalid_json", "bad", param="x", request_id="r1", extra={"status": 1})
    assert body == {
        "type": "https://docs.clearhouse.dev/errors/invalid_json",
        "title": "Bad Request",
        "status": 400,
        "detail": "bad",
        "code": "invalid_json",
        "param": "x",
        "request_id": "r1",
    }


def test_validation_error_past_the_model_maps_to_400_with_param():
    # The model refuses malformed requests first (intake/schemas/parse.py); a domain
    # refusal of a well-formed request is a 400 too, as Stripe answers invalid requests.
    body, headers = problem_for(ValidationError("amount", "too small", "amount_too_small"), "r")
    assert (body["status"], body["code"], body["param"]) == (400, "amount_too_small", "amount")
    assert headers == {}


def test_state_conflicts_are_400_with_their_code():
    from shared.services.errors import InvalidState
    from shared.services.refunds import AlreadyRefunded

    for exc in (InvalidState("not capturable"), AlreadyRefunded("all refunded")):
        body, _ = problem_for(exc, "r")
        assert (body["status"], body["code"]) == (400, exc.code)


def test_service_error_keeps_its_status_code_and_param():
    body, _ = problem_for(NotFound("payment_intent", "pi_1"), None)
    assert (body["status"], body["code"], body["param"]) == (404, "resource_missing", "id")
    assert "request_id" not in body


def test_oauth_error_carries_rfc6749_members():
    body, _ = problem_for(InvalidClient("nope"), "r")
    assert body["error"] == "invalid_client" and body["error_description"] == "nope"
    assert body["status"] == 401


def test_falcon_errors_get_codes_and_keep_headers():
    body, headers = problem_for(falcon.HTTPMethodNotAllowed(["GET"]), "r")
    assert (body["status"], body["code"]) == (405, "method_not_allowed")
    assert headers["Allow"] == "GET"
    body, _ = problem_for(falcon.HTTPRouteNotFound(), "r")
    assert (body["status"], body["code"]) == (404, "resource_missing")
    body, headers = problem_for(
        ApiError(401, "invalid_token", "expired", headers={"WWW-Authenticate": "Bearer"}), "r"
    )
    assert body["code"] == "invalid_token" and headers == {"WWW-Authenticate": "Bearer"}


def test_unexpected_errors_say_nothing_about_themselves():
    body, _ = problem_for(RuntimeError("card 4242424242424242 exploded"), "r")
    assert body["status"] == 500 and "4242" not in body["detail"]


@pytest.mark.parametrize("good", ["abc", "A.b_c-1", "x" * 64])
def test_sane_request_ids_are_kept(good):
    assert sanitize_request_id(good) == good


@pytest.mark.parametrize("bad", [None, "", "x" * 65, "a b", "a\nb", "abc\n", "<script>", "é"])
def test_other_request_ids_are_replaced(bad):
    generated = sanitize_request_id(bad)
    assert generated != bad and generated.startswith("req_")


@pytest.mark.parametrize("raw", [b"{", b'{"a": 1, "a": 2}', b'{"a": NaN}', b"\xff", b"[" * 100_000])
def test_bad_json_is_invalid_json(raw):
    with pytest.raises(ApiError) as err:
        parse_json(raw)
    assert err.value.api_code == "invalid_json"


def test_json_and_form_parse():
    assert parse_json(b'{"amount": 100}') == {"amount": 100}
    assert parse_form(b"grant_type=client_credentials&scope=") == {
        "grant_type": "client_credentials",
        "scope": "",
    }
    with pytest.raises(ApiError):
        parse_form(b"a=1&a=2")


def test_idempotency_key_length_and_request_hash():
    assert check_key(None) is None and check_key("k") == "k"
    for bad in ("", "k" * 256):
        with pytest.raises(Exception) as err:
            check_key(bad)
        assert err.value.param == "Idempotency-Key"
    one = request_hash("POST", "/v1/x", {"b": 1, "a": [1, 2]})
    assert one == request_hash("post", "/v1/x", {"a": [1, 2], "b": 1})
    assert one != request_hash("POST", "/v1/y", {"b": 1, "a": [1, 2]})
    assert request_hash("POST", "/v1/x", {}, mac=lambda m: "k:" + m).startswith("k:")
