"""Untrusted bytes against every route: no 500, every refusal problem+json, nothing stored.

The falcon app runs in this process (falcon.testing.TestClient) on a
database of its own (real Postgres, migrated) with a real access token; the
last tests send raw bytes to a real gunicorn, which decodes paths and query
strings as a server does (the TestClient tidies some bytes away). The
routes come from the app itself, so a new route is fuzzed without anyone
listing it here. Hypothesis is derandomized (the same examples every run)
and bounded: a few examples per route and method, well under a minute.
"""

from __future__ import annotations

import json
import socket
import uuid
from urllib.parse import quote, quote_plus

import falcon.inspect
import falcon.testing
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from intake.app import create_app
from shared.config import Settings
from shared.db.tables import idempotency_keys, payment_intents
from shared.db.uow import UnitOfWork
from shared.security.signing import SigningKeys
from shared.security.vault import Vault
from shared.services.merchants import create_merchant
from tests import factories as f
from tests.conftest import free_port
from tests.support import processes
from tests.support.scratchdb import scratch_database

pytestmark = pytest.mark.integration

PROBLEM_JSON = "application/problem+json"
FORM = "application/x-www-form-urlencoded"
# Examples: per method a route implements, and per route for the methods falcon
# answers itself (405, OPTIONS: one responder for all, so sampled; each of them
# also gets one fixed hostile request).
EXAMPLES_OWN = 40
EXAMPLES_FALCONS = 10
# Not a request method for a WSGI app (falcon lists it for ASGI).
NOT_HTTP = {"WEBSOCKET"}

# Characters that have broken parsers, databases and encoders before.
NASTY = [
    "\x00",
    "\ud800",
    "\udfff",
    "\ufffd",
    "\ufeff",
    "\u202e",
    "\uffff",
    "\U0010ffff",
    "\u0301",
    "é",
    "%",
    "%00",
    "+",
    "&",
    "=",
    "'",
    '"',
    "\\",
    "\n",
    "[",
]
nasty_text = st.lists(st.characters() | st.sampled_from(NASTY), max_size=16).map("".join) | (
    st.sampled_from(["", "pi_x", "10", "-1", "1e999", "2024-02-30", "null"])
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)
# Headers the app reads, and one it does not.
READ_HEADERS = ["Idempotency-Key", "X-Request-Id", "Accept", "X-Note"]
# Raw percent-escapes a client may send: NUL, bytes that are not UTF-8, an
# encoded surrogate, a truncated sequence.
RAW_ESCAPES = ["%00", "%ff", "%c3", "%ed%a0%80", "%c0%af", "%e2%82", "%"]


# The limiter stays on (its headers and middleware are fuzzed too), out of reach:
# some 2,000 requests of one client from one address would otherwise fuzz the 429.
OUT_OF_REACH = dict.fromkeys(
    (
        "rate_limit_per_client",
        "rate_limit_per_ip",
        "rate_limit_token_per_client",
        "rate_limit_token_per_ip",
    ),
    1e6,
)


def _settings(scratch_url: str, key_dir: str) -> Settings:
    return Settings.from_env(database_url=scratch_url, key_dir=key_dir, **OUT_OF_REACH)


@pytest.fixture(scope="module")
def app_under_test(database, tmp_path_factory):
    """(the app, its engine, a merchant and its access token), on a database of its own."""
    with scratch_database("clearhouse_fuzz") as (url, engine):
        with pytest.MonkeyPatch.context() as mp:
            for name in ("JWT_PRIVATE_KEY", "CARD_KEYS", "CARD_FINGERPRINT_KEY"):
                mp.delenv(name, raising=False)
            config = _settings(url, str(tmp_path_factory.mktemp("keys")))
        vault = Vault.from_settings(config)
        app = create_app(
            config,
            engine=engine,
            dispatch=lambda step, ids, countdown=None: None,  # nothing leaves this process
            keys=SigningKeys.from_settings(config),
            vault=vault,
        )
        with UnitOfWork(engine) as uow:
            merchant = create_merchant(uow, vault, f"fuzz-{uuid.uuid4().hex[:8]}")
            uow.commit()
        client = falcon.testing.TestClient(app)
        token = client.simulate_post("/v1/oauth/token", json=f.client_credentials(merchant)).json[
            "access_token"
        ]
        yield app, engine, merchant, token


def operations(app: falcon.App):
    """Every route of the app, read from it: (template, resource, own, falcon's methods)."""
    for route in falcon.inspect.inspect_routes(app):
        concrete = route.path.replace("{", "x").replace("}", "")
        resource, *_ = app._router.find(concrete)
        methods = [m for m in route.methods if m.method not in NOT_HTTP]
        own = [m.method for m in methods if not m.internal]
        yield route.path, resource, own, [m.method for m in methods if m.internal]


def _fields(model) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _encoded(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def requests_for(draw, template: str, resource, method: str, token: str):
    """One request to ``template``: fields, query, headers and body from hostile parts."""
    op = getattr(resource, "operations", {}).get(method)
    path = template
    for field in [p[1:-1] for p in template.split("/") if p.startswith("{")]:
        value = _encoded(draw(nasty_text)) + draw(st.sampled_from(["", *RAW_ESCAPES]))
        path = path.replace("{" + field + "}", value or "x")
    names = st.sampled_from(_fields(op and op.query) or ["limit"]) | nasty_text
    pairs = draw(st.lists(st.tuples(names, nasty_text), max_size=4))
    query = "&".join(
        f"{quote_plus(n.encode('utf-8', 'surrogatepass'))}="
        f"{quote_plus(v.encode('utf-8', 'surrogatepass'))}"
        for n, v in pairs
    ) + draw(st.sampled_from(["", *(f"&q={e}" for e in RAW_ESCAPES), "&%ff=1"]))
    # Mostly the real token, so requests get past authentication; else a hostile one.
    scheme = draw(st.sampled_from(["ok", "ok", "ok", "Bearer ", "Basic ", ""]))
    headers = {"Authorization": f"Bearer {token}" if scheme == "ok" else scheme + draw(nasty_text)}
    for name in draw(st.lists(st.sampled_from(READ_HEADERS), max_size=2, unique=True)):
        # Header values are latin-1 strings on a WSGI server; in-process, anything.
        headers[name] = draw(nasty_text)
    content_type = draw(
        st.sampled_from(
            ["application/json", "application/json; charset=utf-8", FORM, "text/plain", None]
        )
    )
    if content_type:
        headers["Content-Type"] = content_type
    body_fields = _fields(op and op.body)
    body = draw(
        st.one_of(
            st.none(),
            json_values.map(lambda v: json.dumps(v).encode()),
            st.fixed_dictionaries(
                {}, optional={n: json_values for n in body_fields or ["amount"]}
            ).map(lambda v: json.dumps(v).encode()),
            st.lists(st.tuples(nasty_text, nasty_text), max_size=3).map(
                lambda kv: "&".join(f"{_encoded(k)}={_encoded(v)}" for k, v in kv).encode()
            ),
            st.binary(max_size=64),
        )
    )
    return path, query.lstrip("&"), headers, body


def _check(resp, method: str, path: str = "") -> None:
    assert resp.status_code < 500, resp.text[:1000]
    if resp.status_code >= 400 and path.startswith("/console"):
        # The web console (intake/console/) answers its refusals as HTML pages.
        assert resp.headers["content-type"].startswith("text/html"), resp.headers
        if method != "HEAD":
            assert f"<h1>{resp.status_code} " in resp.text, resp.text[:1000]
        return
    if resp.status_code >= 400:
        assert resp.headers["content-type"].startswith(PROBLEM_JSON), resp.headers
        if method != "HEAD":
            problem = json.loads(resp.text)
            assert {"type", "title", "status", "detail"} <= problem.keys(), problem
            assert problem["status"] == resp.status_code


def _fuzzer(client, template: str, resource, methods: list[str], examples: int, token: str):
    """A hypothesis test of one route, the method drawn from ``methods``."""

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data):
        method = data.draw(st.sampled_from(methods))
        path, query, headers, body = data.draw(requests_for(template, resource, method, token))
        note(f"{method} {path}?{query} headers={headers!r} body={body!r}")
        _check(_send(client, method, path, query, headers, body), method, path)

    return fuzz


def _send(client, method, path, query, headers, body):
    return client.simulate_request(method, path, query_string=query, headers=headers, body=body)


# Fixed hostile requests that every method of every route gets: (query, headers, body).
HOSTILE = [
    ("q=%00&%ff=1&r=%ed%a0%80", {"Accept": "\x00"}, None),
    ("", {"Content-Type": "application/json"}, b'{"a\\u0000": ["\\ud800", {"b": "\\udfff"}]}'),
]


# Falcon lists WebDAV methods too, which wsgiref's validator warns about.
@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")
def test_no_route_or_method_answers_500_to_hostile_input(app_under_test):
    app, _, _, token = app_under_test
    client = falcon.testing.TestClient(app)
    seen = set()
    for template, resource, own, falcons in operations(app):
        for method in own:
            _fuzzer(client, template, resource, [method], EXAMPLES_OWN, token)()
        _fuzzer(client, template, resource, falcons, EXAMPLES_FALCONS, token)()
        path = template.replace("{", "").replace("}", "")
        for method in [*own, *falcons]:
            for query, headers, body in HOSTILE:
                auth = {"Authorization": f"Bearer {token}"}
                _check(_send(client, method, path, query, auth | headers, body), method, path)
            seen.add((template, method))
    # Every route the app serves was fuzzed, its own methods and falcon's.
    assert ("/v1/payment_intents", "POST") in seen and len(seen) > 17 * 20


# --- the refusals themselves -------------------------------------------------


def _card_body(cvc: str = "123", **over) -> dict:
    body = f.card_body(**over)
    body["payment_method"]["card"]["cvc"] = cvc
    return body


def _rows_of(engine, merchant_id) -> tuple[int, int]:
    """How many intents and idempotency keys the merchant has."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                select(func.count()).select_from(t).where(t.c.merchant_id == merchant_id)
            ).scalar_one()
            for t in (payment_intents, idempotency_keys)
        )


CREATE = ("POST", "/v1/payment_intents")
JSON = {"Content-Type": "application/json"}


def _raw_json(body: dict, **strings) -> bytes:
    """``body`` as JSON text, with ``strings`` spliced in as escapes (``\\u0000``, ``\\ud800``)."""
    text = json.dumps(body)
    for marker, escape in strings.items():
        text = text.replace(marker, escape)
    return text.encode()


REFUSALS = [
    # (case, method, path, query, extra headers, body, param)
    ("nul in a metadata value", *CREATE, "", JSON,
     json.dumps(_card_body(metadata={"note": "a\x00b"})).encode(), "metadata[note]"),
    ("lone surrogate from a JSON escape", *CREATE, "", JSON,
     _raw_json(_card_body(description="MARK"), MARK="\\ud800"), "description"),
    ("lone low surrogate deep in the card", *CREATE, "", JSON,
     _raw_json(_card_body(cvc="MARK"), MARK="12\\udfff"),
     "payment_method[card][cvc]"),
    ("nul in a metadata key", *CREATE, "", JSON,
     _raw_json(_card_body(metadata={"MARK": "v"}), MARK="k\\u0000"), "metadata"),
    ("nul in the idempotency key", *CREATE, "", {**JSON, "Idempotency-Key": "k\x00"},
     json.dumps(_card_body()).encode(), "Idempotency-Key"),
    ("lone surrogate in a header", *CREATE, "", {**JSON, "X-Note": "\udc80"},
     json.dumps(_card_body()).encode(), "X-Note"),
    ("nul in a query value", "GET", "/v1/payment_intents", "starting_after=pi_%00", {}, None,
     "starting_after"),
    ("invalid UTF-8 in a query value", "GET", "/v1/events", "type=%ff", {}, None, "type"),
    ("encoded surrogate in a query value", "GET", "/v1/webhook_deliveries",
     "event_id=%ed%a0%80", {}, None, "event_id"),
    ("invalid UTF-8 in a query name", "GET", "/v1/balance", "%c3=1", {}, None, "query"),
    ("nul in a path id", "GET", "/v1/payment_intents/pi_%00", "", {}, None, "intent_id"),
    ("nul in a form body", "POST", "/v1/oauth/token", "", {"Content-Type": FORM},
     b"grant_type=client_credentials&client_id=ci_%00", "client_id"),
    ("invalid UTF-8 in a form body", "POST", "/v1/oauth/token", "", {"Content-Type": FORM},
     b"grant_type=client_credentials&client_secret=%ff", "client_secret"),
    ("nul in a JSON OAuth secret", "POST", "/v1/oauth/token", "", JSON,
     json.dumps({"grant_type": "client_credentials", "client_id": "ci_1",
                 "client_secret": "s\x00"}).encode(), "client_secret"),
]  # fmt: skip


@pytest.mark.parametrize(
    "method,path,query,headers,body,param", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_bad_bytes_are_a_400_naming_the_param_and_store_nothing(
    app_under_test, method, path, query, headers, body, param
):
    app, engine, merchant, token = app_under_test
    mid = merchant["merchant_id"]
    before = _rows_of(engine, mid)
    resp = falcon.testing.TestClient(app).simulate_request(
        method,
        path,
        query_string=query,
        headers={"Authorization": f"Bearer {token}", **headers},
        body=body,
    )
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM_JSON)
    assert (resp.json["code"], resp.json["param"]) == ("parameter_invalid", param), resp.json
    assert _rows_of(engine, mid) == before


def test_a_path_that_is_not_utf8_is_a_400_as_a_server_hands_it_over(app_under_test):
    app, _, _, token = app_under_test
    # gunicorn unquotes the path and hands its bytes over as latin-1; falcon's
    # TestClient would have made U+FFFD of them already, so set PATH_INFO itself.
    resp = falcon.testing.TestClient(app).simulate_get(
        "/v1/payment_intents/pi_x",
        headers={"Authorization": f"Bearer {token}"},
        extras={"PATH_INFO": "/v1/payment_intents/pi_\xff"},
    )
    assert resp.status_code == 400, resp.text
    assert (resp.json["code"], resp.json["param"]) == ("parameter_invalid", "path")


# --- the same bytes as gunicorn hands them over ------------------------------


def _raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Send bytes exactly as given (no client library tidies them); (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode("latin-1")
    return int(status_line.split()[1]), headers, payload


@pytest.fixture(scope="module")
def served(database, redis_client):
    port = free_port()
    with processes.gunicorn(port, workers=1):
        yield port


GUNICORN_REFUSALS = [
    # (case, request line and headers, body, param)
    ("path not UTF-8", b"GET /v1/payment_intents/pi_%ff HTTP/1.1", b"", "path"),
    ("NUL in a path id", b"GET /v1/payment_intents/pi_%00 HTTP/1.1", b"", "intent_id"),
    ("encoded surrogate in a query value", b"GET /v1/events?type=%ed%a0%80 HTTP/1.1", b"",
     "type"),
    ("surrogate escape in a JSON body",
     b"POST /v1/payment_intents HTTP/1.1\r\nContent-Type: application/json",
     b'{"amount": 1, "currency": "USD", "description": "\\udbff"}', "description"),
]  # fmt: skip


@pytest.mark.parametrize(
    "head,body,param", [r[1:] for r in GUNICORN_REFUSALS], ids=[r[0] for r in GUNICORN_REFUSALS]
)
def test_under_gunicorn_bad_bytes_are_a_400_naming_the_param(
    served, make_merchant, head, body, param
):
    token = f.access_token(f"http://127.0.0.1:{served}", make_merchant())
    head += b"\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token.encode()
    status, headers, payload = _raw_request(served, head, body)
    assert status == 400, payload
    assert headers["content-type"].startswith(PROBLEM_JSON)
    problem = json.loads(payload)
    assert (problem["code"], problem["param"]) == ("parameter_invalid", param), problem


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/balance HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: a\x00b",
        b"GET /v1/payment_intents?starting_after=pi_\xff HTTP/1.1\r\nHost: 127.0.0.1",
    ],
    ids=["raw NUL in a header", "raw byte in the request line"],
)
def test_under_gunicorn_what_http_forbids_is_refused_before_the_app(served, head):
    # gunicorn's own 400 (text/html), before any app code runs: not ours to shape.
    status, headers, payload = _raw_request(served, head)
    assert (status, headers["content-type"]) == (400, "text/html"), payload
