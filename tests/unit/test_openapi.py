"""The OpenAPI document: generated from the models the resources validate with."""

import re

import falcon.testing
import pytest

from intake.openapi import ERRORS

FREE_FORM = {"OpenAPIDocument"}  # an OpenAPI document is free-form by nature
SCHEMA_KEYWORDS = ("type", "$ref", "anyOf", "oneOf", "allOf", "const", "enum")


def _templates(nodes):
    for node in nodes:
        if node.resource is not None:
            yield node.uri_template, node.method_map
        yield from _templates(node.children)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from intake.app import create_app
    from shared.config import Settings

    # No Redis here: the rate limits (which would read it) are off.
    limits_off = dict(rate_limit_per_client=0, rate_limit_per_ip=0, rate_limit_token_per_ip=0)
    return create_app(
        Settings().replace(key_dir=str(tmp_path_factory.mktemp("keys")), **limits_off),
        engine=object(),
        dispatch=lambda *a: None,
        redis_client=object(),
    )


@pytest.fixture(scope="module")
def spec(app):
    return falcon.testing.TestClient(app).simulate_get("/openapi.json").json


def test_every_route_and_method_is_documented(app, spec):
    documented = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops}
    served = {
        (template, method)
        for template, methods in _templates(app._router._roots)
        for method, responder in methods.items()
        # falcon answers the methods a resource does not define itself (405, OPTIONS)
        if getattr(responder, "__self__", None) is not None
        # The web console's HTML pages (intake/console/) are not API operations.
        and not template.startswith("/console")
    }
    assert served == documented


def _operations(spec):
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


def test_operations_have_ids_tags_typed_responses_and_every_error_status(spec):
    ids = []
    for name, op in _operations(spec):
        ids.append(op["operationId"])
        assert op["tags"], name
        statuses = {int(s) for s in op["responses"]}
        assert set(ERRORS) <= statuses, name
        assert set(ERRORS) == {400, 401, 403, 404, 409, 413, 415, 422, 429, 503}
        for status, response in op["responses"].items():
            schemas = [c["schema"] for c in response["content"].values()]
            assert schemas and all(s.get("$ref") or s.get("type") for s in schemas), name
            if int(status) >= 400:
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }
    assert len(ids) == len(set(ids))


def test_bodies_are_typed_and_required_where_the_resource_needs_one(spec):
    required = {
        "POST /v1/payment_intents",
        "POST /v1/refunds",
        "POST /v1/oauth/token",
        "POST /v1/oauth/revoke",
        "POST /v1/operator/merchants",
        "POST /v1/operator/merchants/{merchant_id}/limits",
        "POST /v1/operator/merchants/{merchant_id}/fraud_threshold",
        "POST /v1/operator/merchants/{merchant_id}/webhook_url",
        "POST /v1/operator/operators",
        "POST /v1/operator/refunds",
        "POST /v1/operator/blocklist",
        "POST /v1/operator/reports/daily",
        "POST /v1/operator/login",
        "POST /v1/operator/password",
    }
    for name, op in _operations(spec):
        body = op.get("requestBody")
        if name.startswith("GET"):
            assert body is None, name
            continue
        assert body is not None, name
        assert body["required"] is (name in required), name
        for media in body["content"].values():
            assert media["schema"]["$ref"].startswith("#/components/schemas/"), name


def _untyped(schema, where):
    """Places in ``schema`` that say nothing of their shape."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and not (
            schema.get("properties")
            or schema.get("additionalProperties") is not None
            or schema.get("propertyNames")
        ):
            yield where
        if "items" in schema and not any(k in schema["items"] for k in SCHEMA_KEYWORDS):
            yield where + ".items"
        for key, value in schema.items():
            yield from _untyped(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _untyped(value, f"{where}[{i}]")


def test_every_component_schema_is_typed(spec):
    schemas = spec["components"]["schemas"]
    untyped = [
        place
        for name, schema in schemas.items()
        if name not in FREE_FORM
        for place in _untyped(schema, name)
    ]
    assert untyped == []
    for name, schema in schemas.items():
        if name in FREE_FORM or "oneOf" in schema:
            continue
        assert schema["type"] == "object", name
        for prop, sub in schema.get("properties", {}).items():
            assert any(k in sub for k in SCHEMA_KEYWORDS), f"{name}.{prop}"


def test_parameters_carry_their_constraints(spec):
    listing = spec["paths"]["/v1/payment_intents"]["get"]["parameters"]
    limit = next(p for p in listing if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    status = next(p for p in listing if p["name"] == "status")
    assert "processing" in status["schema"]["enum"] and "null" not in str(status["schema"])
    events = spec["paths"]["/v1/events"]["get"]["parameters"]
    assert "refund.succeeded" in next(p for p in events if p["name"] == "type")["schema"]["enum"]
    date = spec["paths"]["/v1/reports/daily"]["get"]["parameters"][0]
    assert date["required"] and date["schema"]["format"] == "date"
    for route, name, example in (("weekly", "week", "2026-W48"), ("monthly", "month", "2026-11")):
        (period,) = spec["paths"][f"/v1/reports/{route}"]["get"]["parameters"]
        assert (period["name"], period["required"]) == (name, True)
        assert re.fullmatch(period["schema"]["pattern"].strip("^$"), example)
    create = spec["paths"]["/v1/payment_intents"]["post"]["parameters"]
    key = next(p for p in create if p["name"] == "Idempotency-Key")
    assert key["in"] == "header" and key["schema"]["pattern"]


def test_metadata_keys_are_bounded_as_the_domain_bounds_them(spec):
    from shared.domain.validation import MAX_METADATA_KEY_LEN, MAX_METADATA_KEYS

    metadata = spec["components"]["schemas"]["CreatePaymentIntent"]["properties"]["metadata"]
    obj = next(s for s in metadata["anyOf"] if s["type"] == "object")
    assert obj["propertyNames"]["maxLength"] == MAX_METADATA_KEY_LEN
    assert obj["maxProperties"] == MAX_METADATA_KEYS


def test_a_responder_without_an_operation_is_refused():
    from intake import openapi

    class Undocumented:
        def on_get(self, req, resp):
            pass

    with pytest.raises(ValueError, match="GET /x"):
        openapi.build([("/x", Undocumented())])


def test_each_authenticated_operation_names_its_scope_and_the_scheme_lists_them_all(spec):
    from shared.domain.operators import ROLES
    from shared.domain.scopes import SCOPES

    flow = spec["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
    assert flow["scopes"] == SCOPES and flow["tokenUrl"] == "/v1/oauth/token"
    assert "security" not in spec  # each operation says its own
    used = set()
    for name, op in _operations(spec):
        open_ = name.split()[1] in {
            "/v1/oauth/token",
            "/v1/oauth/revoke",
            "/.well-known/jwks.json",
            "/health",
            "/ready",
            "/openapi.json",
        }
        if open_:
            assert op["security"] == [], name
            continue
        if name.split()[1].startswith("/v1/operator/"):
            # Operator routes: an operator token and a role, or (login) no token at all.
            assert op["security"] in ([{"operatorToken": []}], []), name
            assert op["security"] == [] or op["x-operator-role"] in ROLES, name
            continue
        ((scheme, needed),) = (item for req in op["security"] for item in req.items())
        assert scheme == "oauth2" and len(needed) == 1 and needed[0] in SCOPES, name
        used.add(needed[0])
    assert used == set(SCOPES)
    assert spec["paths"]["/v1/webhook_deliveries"]["get"]["security"] == [
        {"oauth2": ["events:read"]}
    ]
    assert spec["paths"]["/v1/events/{event_id}/redeliver"]["post"]["security"] == [
        {"oauth2": ["events:write"]}
    ]


def test_an_authenticated_operation_without_a_scope_is_refused():
    from intake import openapi
    from intake.schemas import responses

    class Unscoped:
        auth_required = True
        operations = {"GET": openapi.Operation("x", "x", "x", 200, responses.Health)}

        def on_get(self, req, resp):
            pass

    with pytest.raises(ValueError, match="GET /x: an authenticated operation names its scope"):
        openapi.build([("/x", Unscoped())])


def test_the_operator_login_and_password_change_declare_the_locked_answer(spec):
    for path in ("/v1/operator/login", "/v1/operator/password"):
        locked = spec["paths"][path]["post"]["responses"]["423"]
        assert "operator_locked" in locked["description"]
        assert "Retry-After" in locked["headers"]
    assert "423" not in spec["paths"]["/v1/operator/refresh"]["post"]["responses"]
    assert spec["paths"]["/v1/operator/login"]["post"]["security"] == []


def test_the_operator_login_documents_its_own_refusals(spec):
    login = spec["paths"]["/v1/operator/login"]["post"]["responses"]
    assert "invalid_credentials" in login["401"]["description"]
    assert "password_change_required" in login["403"]["description"]
    password = spec["paths"]["/v1/operator/password"]["post"]["responses"]
    assert "password_too_weak" in password["400"]["description"]
    refresh = spec["paths"]["/v1/operator/refresh"]["post"]["responses"]
    assert "reauthentication_required" in refresh["401"]["description"]
