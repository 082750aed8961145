"""Hostile input against every console page, signed in with a valid CSRF token: no 500.

tests/integration/test_fuzz_routes.py fuzzes every route without a console session, where
the console's middleware refuses (303, 403) before any page runs. Here each request holds
an admin's session cookie and, in most form bodies, the session's real CSRF token, so the
pages themselves (their form and query models, the services behind them) meet the hostile
fields; every refusal must be an HTML page with its status, never a 500. On a database of
its own: whatever a fuzzed form manages to do stays there.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote_plus

import falcon.testing
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from intake.app import create_app
from intake.console import csrf
from intake.console.session import SESSION_COOKIE
from shared.config import Settings
from shared.db.uow import UnitOfWork
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_operator_token
from shared.security.vault import Vault
from shared.services.operators import create_operator
from tests.integration.test_fuzz_routes import (
    OUT_OF_REACH,
    _check,
    _encoded,
    nasty_text,
    operations,
)
from tests.support.scratchdb import scratch_database

pytestmark = pytest.mark.integration

EXAMPLES = 30
FORM = "application/x-www-form-urlencoded"
# The fields each console page reads (its form or query model in intake/console/forms.py):
# mostly these, so the requests get past the models' "no other field" into the page.
FIELDS = {
    "/console/login": ["email", "password", "totp"],
    "/console/password": ["email", "current_password", "new_password", "totp"],
    "/console": ["merchant", "status", "last4", "created_gte", "created_lte", "starting_after"],
    "/console/payment_intents/{intent_id}": ["done"],
    "/console/payment_intents/{intent_id}/refund": ["amount", "reason", "confirm"],
    "/console/events/{event_id}/redeliver": ["intent", "confirm"],
    "/console/blocklist": ["kind", "value", "reason", "starting_after", "done"],
    "/console/blocklist/remove": ["kind", "value"],
    "/console/merchants": ["starting_after", "done"],
    "/console/merchants/{merchant_id}/suspend": ["reason"],
    "/console/audit": ["actor", "action", "target", "starting_after"],
}
VALUES = nasty_text | st.sampled_from(
    ["yes", "ip", "customer", "2024-01-01", "2024-02-30", "100", "0", "-5", "1e9", "succeeded"]
    + ["10.1.2.3", "op@example.com", "1234", "duplicate", "pi_x", "evt_x", "mch_x"]
)


@pytest.fixture(scope="module")
def console_app(database, tmp_path_factory):
    """(the app, a signed-in admin's cookie, its CSRF token), on a database of its own."""
    with scratch_database("clearhouse_console_fuzz") as (url, engine):
        with pytest.MonkeyPatch.context() as mp:
            for name in ("JWT_PRIVATE_KEY", "OPERATOR_JWT_PRIVATE_KEY", "CARD_KEYS"):
                mp.delenv(name, raising=False)
            mp.delenv("CARD_FINGERPRINT_KEY", raising=False)
            config = Settings.from_env(
                database_url=url, key_dir=str(tmp_path_factory.mktemp("keys")), **OUT_OF_REACH
            )
        vault = Vault.from_settings(config)
        operator_keys = SigningKeys.for_operators(config)
        app = create_app(
            config,
            engine=engine,
            dispatch=lambda step, ids, countdown=None: None,
            operator_keys=operator_keys,
            vault=vault,
        )
        email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
        with UnitOfWork(engine) as uow:
            create_operator(uow, vault, email, "admin", "test:fuzz")
            uow.commit()
        with engine.connect() as conn:
            operator_id = conn.exec_driver_sql(
                "SELECT id FROM operators WHERE email = %s", (email,)
            ).scalar_one()
        token, _ = issue_operator_token(
            operator_keys, config, operator_id, email, "admin", auth_time=int(time.time())
        )
        claims = operator_keys.verify(
            token, audience=config.operator_jwt_audience, issuer=config.jwt_issuer
        )
        yield app, token, csrf.for_session(vault.fingerprint, claims)


@st.composite
def console_requests(draw, template: str, method: str, token: str, form_token: str):
    path = template
    for field in [p[1:-1] for p in template.split("/") if p.startswith("{")]:
        path = path.replace("{" + field + "}", _encoded(draw(nasty_text)) or "x")
    known = FIELDS.get(template, [])
    pairs = draw(st.fixed_dictionaries({}, optional={name: VALUES for name in known}))
    if not known or draw(st.integers(0, 5)) == 0:
        pairs.update(draw(st.dictionaries(nasty_text, VALUES, max_size=2)))
    pairs = list(pairs.items())
    if pairs and draw(st.integers(0, 5)) == 0:
        pairs.append(pairs[0])  # a field given twice
    if method == "POST" and draw(st.integers(0, 3)):
        pairs.append(("csrf", form_token))  # mostly past the CSRF check, into the page
    encoded = "&".join(
        f"{quote_plus(k.encode('utf-8', 'surrogatepass'))}="
        f"{quote_plus(v.encode('utf-8', 'surrogatepass'))}"
        for k, v in pairs
    )
    headers = {"Cookie": f"{SESSION_COOKIE}={token}"}
    if method == "POST":
        headers["Content-Type"] = draw(st.sampled_from([FORM, FORM, "application/json"]))
        return path, "", headers, encoded.encode()
    return path, encoded, headers, None


def _fuzzer(client, template: str, method: str, token: str, form_token: str):
    """A hypothesis test of one console route and method."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data):
        path, query, headers, body = data.draw(
            console_requests(template, method, token, form_token)
        )
        note(f"{method} {path}?{query} body={body!r}")
        got = client.simulate_request(method, path, query_string=query, headers=headers, body=body)
        _check(got, method, path)

    return fuzz


def test_no_console_page_answers_500_to_hostile_input_when_signed_in(console_app):
    app, token, form_token = console_app
    client = falcon.testing.TestClient(app)
    fuzzed = set()
    for template, _resource, own, _falcons in operations(app):
        if not template.startswith("/console"):
            continue
        for method in own:
            _fuzzer(client, template, method, token, form_token)()
            fuzzed.add((template, method))
    assert ("/console/payment_intents/{intent_id}/refund", "POST") in fuzzed
    assert len(fuzzed) >= 16
