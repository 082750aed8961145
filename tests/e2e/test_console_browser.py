"""The web console in a real browser: headless Debian chromium, driven by selenium.

Against the e2e stack (gunicorn serving the app, the workers, the relay): an operator
made with the real CLI sets its own password and logs in through the forms with TOTP
codes from pyotp, searches its merchant's succeeded intent, opens it, refunds part of
it through the confirmation step, sees the refund on the page; then the audit row is
read from the database. Every page visited is saved as a PNG under artifacts/console/
(git-ignored) and its path printed.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from shared.db.tables import audit_log
from tests import factories as f
from tests.e2e.conftest import ROOT, Client, cli, create_merchant
from tests.support import chromium
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

SHOTS = ROOT / "artifacts" / "console"
STEP_S = 30  # TOTP's time step


@pytest.fixture
def browser():
    try:
        chromium.ensure_installed()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    driver = chromium.headless_chrome(1400, 1200)
    driver.implicitly_wait(0)
    driver.wait = WebDriverWait(driver, 15)
    yield driver
    driver.quit()


class Pages:
    """Visits pages and screenshots each one as NN-name.png."""

    def __init__(self, driver, base: str):
        self.driver = driver
        self.base = base
        self.shots: list[str] = []
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob("*.png"):
            old.unlink()  # the last run's pictures: this run's alone remain

    def shot(self, name: str) -> None:
        path = SHOTS / f"{len(self.shots) + 1:02d}-{name}.png"
        # The whole page, not the window's part of it (DevTools renders beyond the viewport).
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        self.shots.append(str(path.relative_to(ROOT)))
        print(f"console screenshot: {path}")

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str):
        return self.driver.wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def fill(self, form: str, **fields: str) -> None:
        for name, value in fields.items():
            box = self.find(f"{form} [name='{name}']")
            box.clear()
            box.send_keys(value)

    def submit(self, form: str) -> None:
        """Press the form's button and wait for the next page to replace this one."""
        old = self.find("html")
        self.find(f"{form} button[type='submit']").click()
        self.driver.wait.until(ec.staleness_of(old))

    def heading(self) -> str:
        return self.find("h1").text


def enrol_support_operator() -> tuple[str, str, pyotp.TOTP]:
    """``clearhouse operator create --role support --json``: email, temporary password, TOTP."""
    email = f"console-{secrets.token_hex(5)}@example.com"
    out = cli("operator", "create", "--email", email, "--role", "support", "--json")
    assert out.returncode == 0, out.stderr
    enrolment = json.loads(out.stdout.strip().splitlines()[-1])
    secret = parse_qs(urlparse(enrolment["otpauth_uri"]).query)["secret"][0]
    return email, enrolment["temporary_password"], pyotp.TOTP(secret)


def paid_intent(base: str) -> tuple[dict, dict]:
    merchant = create_merchant(f"Console shop {secrets.token_hex(3)}")
    client = Client(base, merchant)
    body = f.card_body(f.new_card(), 2000, description="console browser test")
    created = client.post("/v1/payment_intents", body)
    assert created.status_code == 202, created.text
    intent = client.wait(created.json()["id"])
    assert intent["status"] == "succeeded", intent
    return merchant, intent


def test_an_operator_logs_in_finds_an_intent_and_refunds_part_of_it(stack, e2e_engine, browser):
    merchant, intent = paid_intent(stack["url"])
    email, temporary, totp = enrol_support_operator()
    pages = Pages(browser, stack["url"])

    # Not signed in: the console sends the browser to its login page.
    pages.open("/console")
    assert urlparse(browser.current_url).path == "/console/login"
    pages.shot("login")

    # The first login: set a password of one's own. Two codes are needed, each accepted
    # once and within one step of now: the previous step's for the change, the current
    # one's for the login. Not in the last seconds of a step, so both stay in the window.
    until(lambda: time.time() % STEP_S < STEP_S - 5, timeout=10, what="a fresh TOTP step")
    pages.find("#change-password").click()
    password = "console operator " + secrets.token_hex(6)
    pages.fill(
        "#password",
        email=email,
        current_password=temporary,
        new_password=password,
        totp=totp.at(time.time() - STEP_S),
    )
    pages.shot("password")
    pages.submit("#password")
    assert "Password changed" in pages.find(".notice").text, browser.page_source
    pages.fill("#login", email=email, password=password, totp=totp.now())
    pages.shot("login-filled")
    pages.submit("#login")
    assert urlparse(browser.current_url).path == "/console", browser.page_source
    assert email in pages.find("header").text
    pages.shot("search")

    # Search the merchant's succeeded intents by the card's last four digits.
    last4 = intent["payment_method"]["card"]["last4"]
    pages.fill("#search", merchant=merchant["merchant_id"], last4=last4)
    Select(pages.find("#search select[name='status']")).select_by_value("succeeded")
    pages.submit("#search")
    results = pages.find("#results").text
    assert intent["id"] in results and "20.00 USD" in results, results
    pages.shot("search-results")

    browser.find_element(By.LINK_TEXT, intent["id"]).click()
    browser.wait.until(lambda d: intent["id"] in d.find_element(By.TAG_NAME, "h1").text)
    assert "payment_intent.succeeded" in pages.find("#events").text
    pages.shot("intent")

    # Refund 5.00 of the 20.00: the console asks first.
    pages.fill("#refund", amount="500")
    pages.submit("#refund")
    assert pages.heading() == "Refund 5.00 USD?"
    pages.shot("confirm-refund")
    pages.find("#confirm input[name='confirm']").click()
    pages.submit("#confirm")
    assert "Refund created." in pages.find(".notice").text
    refunds = pages.find("#refunds").text
    assert "5.00 USD" in refunds, refunds
    assert pages.find("#amount-refunded").text == "5.00 USD"
    pages.shot("refunded")

    # A redelivery asks first too; cancelled here (the merchant has no webhook URL).
    browser.find_element(By.CSS_SELECTOR, "#events form button").click()
    browser.wait.until(lambda d: d.find_element(By.TAG_NAME, "h1").text.startswith("Redeliver"))
    pages.shot("confirm-redeliver")
    pages.find("#confirm a").click()
    browser.wait.until(lambda d: intent["id"] in d.find_element(By.TAG_NAME, "h1").text)

    # The other pages of the console, as a support operator sees them.
    pages.open("/console/blocklist")
    assert pages.find("#block")  # support may add entries
    pages.shot("blocklist")
    pages.open("/console/merchants")
    assert merchant["merchant_id"] in pages.find("#merchants").text
    pages.shot("merchants")

    pages.open(f"/console/audit?actor=operator:{email}")
    audit_page = pages.find("#audit").text
    assert "refund.create" in audit_page and intent["id"] in audit_page
    pages.shot("audit")

    with e2e_engine.connect() as conn:
        rows = conn.execute(
            select(audit_log).where(
                audit_log.c.actor == f"operator:{email}", audit_log.c.action == "refund.create"
            )
        ).all()
    assert len(rows) == 1, rows
    (row,) = rows
    assert row.target == intent["id"]
    assert row.after["amount"] == 500 and row.after["amount_refunded"] == 500
    assert row.request_id and row.source_ip == "127.0.0.1"
    print("console screenshots:", *pages.shots, sep="\n  ")
    assert len(pages.shots) == len({*pages.shots}) >= 12
