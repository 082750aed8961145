"""The web console (/console): session cookie, CSRF, headers, escaping and roles.

A real app on the layer's database, real operators (tests/support/operators.py)
and, where a refund needs one, an intent the real worker took to succeeded. A
signed-in test either logs in through the form (with a TOTP code from pyotp) or
holds a token minted for its operator in the session cookie, as the login sets it.
Every refused POST must leave nothing: no refund, no blocklist entry, no audit row.
"""

from __future__ import annotations

import html
import re
import secrets
import time
from urllib.parse import urlencode

import pyotp
import pytest
from sqlalchemy import func, select, update

from intake.app import create_app
from intake.console.render import environment
from intake.console.session import NONCE_COOKIE, SESSION_COOKIE
from shared.db.tables import audit_log, blocklist, operators, refunds
from shared.security.signing import SigningKeys
from shared.security.tokens import issue_operator_token
from tests import factories as f
from tests.support.apiclient import OwnAddressClient
from tests.support.operators import make_operator, operator_token
from tests.support.waiting import until

pytestmark = pytest.mark.integration

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
XSS = "<script>alert('xss')</script>"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture
def api(settings, engine, vault):
    return OwnAddressClient(
        create_app(settings, engine=engine, dispatch=lambda *a, **k: None, vault=vault)
    )


class Browser:
    """One browser's cookies for the console, over the test's own address."""

    def __init__(self, api, cookies: dict | None = None, protocol: str = "http"):
        self.api = api
        self.cookies = dict(cookies or {})
        self.protocol = protocol

    def _keep(self, got):
        for name, cookie in got.cookies.items():
            if cookie.value:
                self.cookies[name] = cookie.value
            else:
                self.cookies.pop(name, None)
        return got

    def get(self, path: str, **params):
        got = self.api.simulate_get(
            path, params=params or None, cookies=self.cookies, protocol=self.protocol
        )
        return self._keep(got)

    def post(self, path: str, form: dict):
        got = self.api.simulate_post(
            path, body=urlencode(form), headers=FORM, cookies=self.cookies, protocol=self.protocol
        )
        return self._keep(got)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def signed_in(api, settings, op) -> Browser:
    """A browser whose session cookie holds ``op``'s token (what the login form sets)."""
    return Browser(api, {SESSION_COOKIE: operator_token(settings, op)})


def audit_count(engine, op) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(audit_log.c.actor == f"operator:{op.email}")
        ).scalar_one()


def refund_count(engine, intent_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(refunds.c.payment_intent_id == intent_id)
        ).scalar_one()


def paid(submit, engine, merchant_id: str, **extra) -> str:
    intent_id = submit(merchant_id, f.card_body(amount=1000, **extra))
    row = f.wait_until_final(engine, [intent_id])[intent_id]
    assert row.status == "succeeded", row.failure_code
    return intent_id


# --- the session cookie


def test_login_sets_an_httponly_strict_session_cookie_for_console_paths(
    api, settings, engine, vault
):
    op = make_operator(engine, vault, "viewer")
    browser = Browser(api, protocol="https")
    form = browser.get("/console/login")
    assert form.status_code == 200
    nonce = form.cookies[NONCE_COOKIE]
    assert (nonce.http_only, nonce.same_site, nonce.path, nonce.secure) == (
        True,
        "Strict",
        "/console",
        True,
    )
    got = browser.post(
        "/console/login",
        {
            "csrf": csrf_of(form.text),
            "email": op.email,
            "password": op.password,
            "totp": pyotp.TOTP(op.totp_secret).now(),
        },
    )
    assert got.status_code == 303, got.text
    assert got.headers["Location"].endswith("/console")
    cookie = got.cookies[SESSION_COOKIE]
    assert cookie.http_only and cookie.secure
    assert (cookie.same_site, cookie.path) == ("Strict", "/console")
    claims = SigningKeys.for_operators(settings).verify(
        cookie.value, audience=settings.operator_jwt_audience, issuer=settings.jwt_issuer
    )
    assert claims["sub"] == op.id  # the operator token the login gave
    home = browser.get("/console")
    assert home.status_code == 200
    assert op.email in home.text
    with engine.connect() as conn:
        actions = conn.execute(
            select(audit_log.c.action).where(audit_log.c.target == op.email)
        ).scalars()
        assert "operator.login" in list(actions)


def test_over_plain_http_the_cookies_are_not_marked_secure(api):
    got = Browser(api).get("/console/login")
    assert got.cookies[NONCE_COOKIE].secure is False


def test_the_login_forms_share_the_operator_logins_per_ip_limit(settings, engine, vault):
    api = OwnAddressClient(
        create_app(
            settings.replace(rate_limit_token_per_ip=1.0),
            engine=engine,
            dispatch=lambda *a, **k: None,
            vault=vault,
        )
    )
    op = make_operator(engine, vault, "viewer")
    browser = Browser(api)
    token = csrf_of(browser.get("/console/login").text)
    guess = {"csrf": token, "email": op.email, "password": "a guess", "totp": "000000"}
    statuses = [browser.post("/console/login", guess).status_code for _ in range(4)]
    assert 429 in statuses, statuses
    refused = browser.post("/console/password", {**guess, "current_password": "x"})
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "rate_limited" in refused.text and refused.headers["Content-Type"].startswith(
        "text/html"
    )


def test_a_wrong_password_shows_the_form_again_and_sets_no_session(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    browser = Browser(api)
    form = browser.get("/console/login")
    got = browser.post(
        "/console/login",
        {
            "csrf": csrf_of(form.text),
            "email": op.email,
            "password": "not the password at all",
            "totp": pyotp.TOTP(op.totp_secret).now(),
        },
    )
    assert got.status_code == 401
    assert SESSION_COOKIE not in got.cookies
    assert 'id="login"' in got.text


def test_a_temporary_password_leads_to_the_change_password_form(api, engine, vault):
    op = make_operator(engine, vault, "viewer", permanent=False)
    browser = Browser(api)
    form = browser.get("/console/login")
    got = browser.post(
        "/console/login",
        {
            "csrf": csrf_of(form.text),
            "email": op.email,
            "password": op.temporary_password,
            "totp": pyotp.TOTP(op.totp_secret).now(),
        },
    )
    assert got.status_code == 403
    assert 'id="password"' in got.text and 'name="new_password"' in got.text
    assert SESSION_COOKIE not in got.cookies


def test_without_a_valid_session_every_page_redirects_to_login(api, settings, engine, vault):
    op = make_operator(engine, vault, "admin")
    other_ring = SigningKeys.from_settings(settings)  # the merchant ring: a forged token
    forged, _ = issue_operator_token(
        other_ring, settings, op.id, op.email, "admin", auth_time=int(time.time())
    )
    expired, _ = issue_operator_token(
        SigningKeys.for_operators(settings),
        settings,
        op.id,
        op.email,
        "admin",
        auth_time=int(time.time()) - 4000,
        now=time.time() - 3600,
    )
    for cookies in (
        {},
        {SESSION_COOKIE: "garbage"},
        {SESSION_COOKIE: forged},
        {SESSION_COOKIE: expired},
    ):
        for path in ("/console", "/console/blocklist", "/console/merchants", "/console/audit"):
            got = Browser(api, cookies).get(path)
            assert got.status_code == 303, (path, got.text)
            assert got.headers["Location"].endswith("/console/login")
    browser = signed_in(api, settings, op)
    assert browser.get("/console").status_code == 200
    with engine.begin() as conn:
        conn.execute(
            update(operators).where(operators.c.id == op.id).values(disabled_at=func.now())
        )
    assert browser.get("/console").status_code == 303  # disabled: refused at once


def test_a_session_past_half_its_token_life_gets_a_fresh_token(api, settings, engine, vault):
    op = make_operator(engine, vault, "viewer")
    started = time.time() - 600  # 10 of the token's 15 minutes gone
    old, _ = issue_operator_token(
        SigningKeys.for_operators(settings),
        settings,
        op.id,
        op.email,
        op.role,
        auth_time=int(started),
        now=started,
    )
    got = Browser(api, {SESSION_COOKIE: old}).get("/console")
    assert got.status_code == 200
    fresh = got.cookies[SESSION_COOKIE].value
    claims = SigningKeys.for_operators(settings).verify(
        fresh, audience=settings.operator_jwt_audience, issuer=settings.jwt_issuer
    )
    assert claims["exp"] > time.time() + 800
    assert claims["auth_time"] == int(started)  # the session limit still counts from login
    recent = Browser(api, {SESSION_COOKIE: operator_token(settings, op)}).get("/console")
    assert SESSION_COOKIE not in recent.cookies


# --- headers


def test_every_console_response_carries_the_csp_and_security_headers(
    api, settings, engine, vault, make_merchant, submit
):
    op = make_operator(engine, vault, "admin")
    intent = submit(make_merchant()["merchant_id"], f.card_body(), enqueue=False)
    browser = signed_in(api, settings, op)
    pages = [
        browser.get("/console"),
        browser.get(f"/console/payment_intents/{intent}"),
        browser.get("/console/blocklist"),
        browser.get("/console/merchants"),
        browser.get("/console/audit"),
        browser.get("/console/logout"),
        browser.get("/console/static/console.css"),
        browser.get("/console/payment_intents/pi_missing"),  # 404 page
        browser.get("/console/no-such-page"),
        browser.post("/console/blocklist", {"kind": "ip", "value": "10.0.0.1"}),  # 403 page
        Browser(api).get("/console/login"),
        Browser(api).get("/console"),  # the redirect
    ]
    for got in pages:
        assert got.headers["Content-Security-Policy"] == CSP, got.status
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert got.headers["Referrer-Policy"] == "no-referrer"
        assert got.headers["Cache-Control"] == "no-store"
        assert got.headers["X-Frame-Options"] == "DENY"
    assert [p.status_code for p in pages[-5:]] == [404, 404, 403, 200, 303]
    for got in pages:
        if got.status_code in (200, 403, 404) and got.headers["Content-Type"].startswith(
            "text/html"
        ):
            assert "<script" not in got.text  # no JavaScript anywhere
    assert "script-src" not in CSP


def test_the_console_is_not_in_the_openapi_document(api):
    spec = api.simulate_get("/openapi.json").json
    assert not [p for p in spec["paths"] if p.startswith("/console")]


# --- CSRF


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(
    worker, api, settings, engine, vault, make_merchant, submit
):
    op = make_operator(engine, vault, "support")
    someone_else = make_operator(engine, vault, "support")
    intent = paid(submit, engine, make_merchant()["merchant_id"])
    browser = signed_in(api, settings, op)
    page = browser.get(f"/console/payment_intents/{intent}")
    good = csrf_of(page.text)
    theirs = csrf_of(signed_in(api, settings, someone_else).get("/console").text)
    value = f.new_ip()
    for token in (None, "", "0" * 32, theirs, good[:-1] + ("0" if good[-1] != "0" else "1")):
        extra = {} if token is None else {"csrf": token}
        refund = browser.post(
            f"/console/payment_intents/{intent}/refund",
            {"amount": "100", "confirm": "yes", **extra},
        )
        block = browser.post("/console/blocklist", {"kind": "ip", "value": value, **extra})
        for got in (refund, block):
            assert got.status_code == 403, (token, got.text)
            assert "csrf_failed" in got.text
    assert refund_count(engine, intent) == 0
    with engine.connect() as conn:
        assert conn.execute(select(blocklist).where(blocklist.c.value == value)).first() is None
    assert audit_count(engine, op) == 0
    # The same forms with the page's token go through: the refusals above were the token's.
    ok = browser.post(
        f"/console/payment_intents/{intent}/refund",
        {"amount": "100", "confirm": "yes", "csrf": good},
    )
    assert ok.status_code == 303, ok.text
    assert refund_count(engine, intent) == 1


def test_the_login_form_needs_its_pre_session_token(api, engine, vault):
    op = make_operator(engine, vault, "viewer")
    browser = Browser(api)
    form = browser.get("/console/login")
    login = {
        "email": op.email,
        "password": op.password,
        "totp": pyotp.TOTP(op.totp_secret).now(),
    }
    another = Browser(api)
    stranger = csrf_of(another.get("/console/login").text)  # another browser's token
    for extra in ({}, {"csrf": "x" * 32}, {"csrf": stranger}):
        got = browser.post("/console/login", {**login, **extra})
        assert got.status_code == 403, got.text
        assert SESSION_COOKIE not in got.cookies
    no_cookie = Browser(api).post("/console/login", {**login, "csrf": csrf_of(form.text)})
    assert no_cookie.status_code == 403
    with engine.connect() as conn:
        actions = conn.execute(
            select(audit_log.c.action).where(audit_log.c.target == op.email)
        ).scalars()
        # Only the account's creation: not even a failed login, the service was never asked.
        assert list(actions) == ["operator.create"]


# --- escaping


def test_every_page_escapes_what_it_shows(
    worker, api, settings, engine, vault, make_merchant, submit
):
    op = make_operator(engine, vault, "admin")
    merchant = make_merchant(name=f"Shop {XSS}")["merchant_id"]
    intent = paid(submit, engine, merchant, description=f"order {XSS}")
    browser = signed_in(api, settings, op)
    detail = browser.get(f"/console/payment_intents/{intent}")
    value = f"cus_{secrets.token_hex(4)}"
    added = browser.post(
        "/console/blocklist",
        {
            "kind": "customer",
            "value": value,
            "reason": f"fraud {XSS}",
            "csrf": csrf_of(detail.text),
        },
    )
    assert added.status_code == 303, added.text
    pages = {
        "search": browser.get("/console", merchant=merchant),
        "detail": detail,
        "merchants": browser.get("/console/merchants"),
        "blocklist": browser.get("/console/blocklist"),
        "audit": browser.get("/console/audit", actor=f"operator:{op.email}"),
        "error": browser.get("/console/payment_intents/%3Cb%3Eboom"),  # 404 naming the id
    }
    escaped = html.escape(XSS, quote=False)
    for name, got in pages.items():
        assert "<script" not in got.text, name
        if name != "error":
            assert got.status_code == 200, (name, got.text)
            assert escaped in got.text.replace("&#39;", "'"), name
    assert pages["error"].status_code == 404
    assert "&lt;b&gt;boom" in pages["error"].text and "<b>" not in pages["error"].text


def test_templates_autoescape_everything():
    env = environment()
    assert env.autoescape is True
    for name in env.list_templates():
        assert name.endswith(".html")
    out = env.from_string("{{ x }}").render(x=XSS)
    assert "<" not in out and out.startswith("&lt;script&gt;")


# --- roles and actions


def test_a_viewer_sees_no_refund_button_and_its_refund_is_refused(
    worker, api, settings, engine, vault, make_merchant, submit
):
    op = make_operator(engine, vault, "viewer")
    intent = paid(submit, engine, make_merchant()["merchant_id"])
    browser = signed_in(api, settings, op)
    page = browser.get(f"/console/payment_intents/{intent}")
    assert page.status_code == 200
    assert 'id="refund"' not in page.text and "Redeliver" not in page.text
    got = browser.post(
        f"/console/payment_intents/{intent}/refund",
        {"amount": "100", "confirm": "yes", "csrf": csrf_of(page.text)},
    )
    assert got.status_code == 403
    assert "insufficient_role" in got.text
    assert refund_count(engine, intent) == 0
    assert audit_count(engine, op) == 0


def test_a_refund_asks_for_confirmation_then_is_made_and_audited(
    worker, api, settings, engine, vault, make_merchant, submit
):
    op = make_operator(engine, vault, "support")
    intent = paid(submit, engine, make_merchant()["merchant_id"])
    browser = signed_in(api, settings, op)
    token = csrf_of(browser.get(f"/console/payment_intents/{intent}").text)
    ask = browser.post(
        f"/console/payment_intents/{intent}/refund", {"amount": "250", "csrf": token}
    )
    assert ask.status_code == 200
    assert 'name="confirm"' in ask.text and "2.50 USD" in ask.text
    assert refund_count(engine, intent) == 0  # asked, not done
    done = browser.post(
        f"/console/payment_intents/{intent}/refund",
        {"amount": "250", "confirm": "yes", "csrf": token},
    )
    assert done.status_code == 303, done.text
    assert done.headers["Location"].endswith(f"/console/payment_intents/{intent}?done=refunded")
    shown = browser.get(f"/console/payment_intents/{intent}", done="refunded")
    assert "Refund created." in shown.text
    refunds_table = shown.text.split('id="refunds"', 1)[1].split("</table>", 1)[0]
    assert "2.50 USD" in refunds_table
    with engine.connect() as conn:
        (row,) = conn.execute(
            select(audit_log).where(
                audit_log.c.actor == f"operator:{op.email}", audit_log.c.target == intent
            )
        ).all()
    assert row.action == "refund.create" and row.source_ip == api.remote_addr
    assert row.after["amount"] == 250


def test_suspending_a_merchant_is_for_admins(api, settings, engine, vault, make_merchant):
    merchant = make_merchant()["merchant_id"]
    support = signed_in(api, settings, make_operator(engine, vault, "support"))
    page = support.get("/console/merchants")
    assert f"/console/merchants/{merchant}/suspend" not in page.text
    refused = support.post(f"/console/merchants/{merchant}/suspend", {"csrf": csrf_of(page.text)})
    assert refused.status_code == 403
    admin_op = make_operator(engine, vault, "admin")
    admin = signed_in(api, settings, admin_op)
    token = csrf_of(admin.get("/console/merchants").text)
    done = admin.post(f"/console/merchants/{merchant}/suspend", {"csrf": token, "reason": "kyc"})
    assert done.status_code == 303, done.text
    with engine.connect() as conn:
        actions = conn.execute(
            select(audit_log.c.action).where(
                audit_log.c.target == merchant, audit_log.c.actor == f"operator:{admin_op.email}"
            )
        ).scalars()
        assert list(actions) == ["merchant.suspend"]
    assert done.headers["Location"].endswith("/console/merchants?done=suspended")
    listed = admin.get("/console/merchants", done="suspended")  # where the redirect leads
    assert "Merchant suspended." in listed.text
    assert f"/console/merchants/{merchant}/resume" in listed.text
    resumed = admin.post(f"/console/merchants/{merchant}/resume", {"csrf": token})
    assert resumed.status_code == 303, resumed.text


def test_logout_forgets_the_session(api, settings, engine, vault):
    browser = signed_in(api, settings, make_operator(engine, vault, "viewer"))
    token = csrf_of(browser.get("/console").text)
    got = browser.post("/console/logout", {"csrf": token})
    assert got.status_code == 303
    assert got.headers["Location"].endswith("/console/login")
    assert got.cookies[SESSION_COOKIE].value == ""
    assert browser.get("/console").status_code == 303


def test_a_redelivery_asks_for_confirmation_then_is_queued_and_audited(
    worker, api, settings, engine, vault, hooked, submit
):
    op = make_operator(engine, vault, "support")
    merchant, _receiver = hooked
    intent = paid(submit, engine, merchant["merchant_id"])
    browser = signed_in(api, settings, op)
    page = browser.get(f"/console/payment_intents/{intent}")
    event = re.search(r'action="/console/events/(evt_\w+)/redeliver"', page.text).group(1)
    form = {"intent": intent, "csrf": csrf_of(page.text)}
    ask = browser.post(f"/console/events/{event}/redeliver", form)
    assert ask.status_code == 200 and 'name="confirm"' in ask.text
    assert audit_count(engine, op) == 0
    done = browser.post(f"/console/events/{event}/redeliver", {**form, "confirm": "yes"})
    assert done.status_code == 303, done.text
    assert done.headers["Location"].endswith(f"/console/payment_intents/{intent}?done=redelivered")
    with engine.connect() as conn:
        (row,) = conn.execute(
            select(audit_log).where(audit_log.c.actor == f"operator:{op.email}")
        ).all()
    assert (row.action, row.target) == ("event.redeliver", event)


def test_the_blocklist_page_adds_and_removes_entries(api, settings, engine, vault):
    op = make_operator(engine, vault, "support")
    browser = signed_in(api, settings, op)
    token = csrf_of(browser.get("/console/blocklist").text)
    value = f.new_ip()
    added = browser.post(
        "/console/blocklist", {"kind": "ip", "value": value, "reason": "abuse", "csrf": token}
    )
    assert added.status_code == 303, added.text
    assert added.headers["Location"].endswith("/console/blocklist?done=added")
    listed = browser.get("/console/blocklist", done="added")  # where the redirect leads
    assert listed.status_code == 200, listed.text
    assert value in listed.text and "Added to the blocklist." in listed.text
    removed = browser.post(
        "/console/blocklist/remove", {"kind": "ip", "value": value, "csrf": token}
    )
    assert removed.status_code == 303, removed.text
    assert value not in browser.get("/console/blocklist").text
    twice = api.simulate_get(
        "/console/blocklist",
        query_string="done=added&done=removed",
        cookies=browser.cookies,
    )
    assert twice.status_code == 400  # a field given twice is refused, not a crash
    bad = browser.post("/console/blocklist", {"kind": "planet", "value": "x", "csrf": token})
    assert bad.status_code == 400 and "kind" in bad.text
    with engine.connect() as conn:
        actions = conn.execute(
            select(audit_log.c.action)
            .where(audit_log.c.actor == f"operator:{op.email}")
            .order_by(audit_log.c.id)
        ).scalars()
        assert list(actions) == ["blocklist.add", "blocklist.remove"]


def test_the_search_filters_by_merchant_status_last4_and_day(
    api, settings, engine, vault, make_merchant, submit
):
    merchant = make_merchant()["merchant_id"]
    card = f.new_card()
    another = next(c for c in iter(f.new_card, None) if c[-4:] != card[-4:])
    mine = submit(merchant, f.card_body(card), enqueue=False)  # stays processing
    other = submit(merchant, f.card_body(another), enqueue=False)
    browser = signed_in(api, settings, make_operator(engine, vault, "viewer"))

    def found(**query) -> set[str]:
        got = browser.get("/console", merchant=merchant, **query)
        assert got.status_code == 200, got.text
        return set(re.findall(r">(pi_\w+)</a>", got.text))

    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert found() == {mine, other}
    assert found(last4=card[-4:]) == {mine}
    assert found(status="processing", created_gte=today, created_lte=today) == {mine, other}
    assert found(status="succeeded") == set()
    assert found(created_lte="2000-01-01") == set()
    bad = browser.get("/console", last4="12x4")
    assert bad.status_code == 400 and "last4" in bad.text


def test_a_temporary_password_is_changed_on_the_console_then_the_login_works(api, engine, vault):
    op = make_operator(engine, vault, "viewer", permanent=False)
    totp = pyotp.TOTP(op.totp_secret)
    browser = Browser(api)
    token = csrf_of(browser.get("/console/password").text)
    # Each code is good once, within a step of now: the previous step's for the change, the
    # current one's for the login (not in a step's last seconds, so both stay in the window).
    until(lambda: time.time() % 30 < 25, timeout=10, what="a fresh TOTP step")
    change = {
        "csrf": token,
        "email": op.email,
        "current_password": op.temporary_password,
        "totp": totp.at(time.time() - 30),
    }
    weak = browser.post("/console/password", {**change, "new_password": "password1234"})
    # The policy's refusal, on the form again; the code is not used up by it.
    assert weak.status_code == 400
    assert 'id="password"' in weak.text and 'role="alert"' in weak.text
    new_password = "console " + secrets.token_hex(8)
    changed = browser.post("/console/password", {**change, "new_password": new_password})
    assert changed.status_code == 200, changed.text
    assert "Password changed" in changed.text and 'id="login"' in changed.text
    login = {"email": op.email, "password": new_password, "totp": totp.now()}
    got = browser.post("/console/login", {**login, "csrf": csrf_of(changed.text)})
    assert got.status_code == 303, got.text
    assert browser.get("/console").status_code == 200


def test_erasing_a_customer_is_for_admins_and_asks_for_confirmation(
    api, settings, engine, vault, make_merchant, submit
):
    from shared.db.tables import payment_intents

    merchant = make_merchant()["merchant_id"]
    customer = f"cus_{secrets.token_hex(6)}"
    intent = submit(merchant, f.card_body(customer=customer, description="Ada"), enqueue=False)
    form = {"merchant": merchant, "customer": customer}

    def customer_of() -> str:
        with engine.connect() as conn:
            query = select(payment_intents.c.customer).where(payment_intents.c.id == intent)
            return conn.execute(query).scalar_one()

    support = signed_in(api, settings, make_operator(engine, vault, "support"))
    page = support.get("/console/merchants")
    assert 'id="erase"' not in page.text
    token = csrf_of(page.text)
    refused = support.post("/console/customers/erase", {**form, "confirm": "yes", "csrf": token})
    assert refused.status_code == 403 and customer_of() == customer
    admin_op = make_operator(engine, vault, "admin")
    admin = signed_in(api, settings, admin_op)
    page = admin.get("/console/merchants")
    assert 'id="erase"' in page.text
    token = csrf_of(page.text)
    nobody = admin.post("/console/customers/erase", {**form, "merchant": "mch_none", "csrf": token})
    assert nobody.status_code == 404
    ask = admin.post("/console/customers/erase", {**form, "csrf": token})
    assert ask.status_code == 200 and 'name="confirm"' in ask.text and customer in ask.text
    assert customer_of() == customer  # asked, not done
    done = admin.post("/console/customers/erase", {**form, "confirm": "yes", "csrf": token})
    assert done.status_code == 303, done.text
    assert done.headers["Location"].endswith("/console/merchants?done=erased")
    assert "Customer erased." in admin.get("/console/merchants", done="erased").text
    assert customer_of() == "[erased]"
    with engine.connect() as conn:
        (row,) = conn.execute(
            select(audit_log).where(
                audit_log.c.actor == f"operator:{admin_op.email}",
                audit_log.c.action == "customer.erase",
            )
        ).all()
    assert row.source_ip == api.remote_addr and customer not in str(row.after)
