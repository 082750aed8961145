"""Locust against a running stack (``make run``): merchants paying the way the API's docs say.

    make locust     # headless, creates a merchant unless CLEARHOUSE_CLIENT_ID/SECRET are set

or by hand:

    clearhouse merchant create --name Load --json      # note client_id / client_secret
    export CLEARHOUSE_CLIENT_ID=ci_... CLEARHOUSE_CLIENT_SECRET=cs_...
    locust -f tests/load/locustfile.py --host https://127.0.0.1:8000

Over HTTPS the server's certificate is checked against ``CLEARHOUSE_CA_FILE``
(``make run``'s dev CA: var/tls/ca.pem), and ``CLEARHOUSE_CLIENT_CERT_FILE`` /
``CLEARHOUSE_CLIENT_KEY_FILE``, when set, are the client certificate it presents
(what ``TLS_CLIENT_CA_FILE`` on the server asks for).

Needs only locust: nothing of the project is imported, so it runs from any
machine with ``pip install locust``.

Each user fetches a token (``POST /v1/oauth/token``, fetched again before it
expires or on a 401) and runs payment flows at ``LOCUST_RATE_PER_USER`` flows/s
(default 1): create an intent under an ``Idempotency-Key``, retried with the
SAME key on 409, 429, 5xx and connection errors (a retry can never pay twice);
poll it to a final status; capture it when it waits for capture (manual, part of
the amount now and then); refund some that succeeded, in part or in full.

Every card is a fresh Luhn-valid Visa that the sandbox approves (``45...``:
none of the sandbox's special numbers, which start 40, 41 or 42), so the fraud
stage's card-velocity rules never see one twice. ``LOCUST_DECLINE_SHARE``
(default 0) sends that share to the sandbox's decline cards on purpose; each must
fail with its own code, however often it is used (the fraud rules leave the
sandbox's documented numbers alone).

What fails the run (locust's summary, and its exit code with
``--exit-code-on-error``): an answer the flow did not expect (400, 401 twice,
404, 422, ...), a 500/502/504 or a connection error (retried all the same, so
the flow carries on), retries exhausted, and the ``FLOW`` checks: an intent
that is still not final after ``LOCUST_POLL_TIMEOUT_S``, or that ends otherwise
than its card says. The API's back-pressure answers (409 in flight, 429, 503
with ``Retry-After``) are retried and reported under their own names
("... (retried 429)") without failing the run.
"""

from __future__ import annotations

import os
import random
import ssl
import sys
import time
import uuid
from datetime import UTC, datetime

from locust import FastHttpUser, constant_throughput, events, task
from locust.exception import StopUser

CLIENT_ID = os.environ.get("CLEARHOUSE_CLIENT_ID", "")
CLIENT_SECRET = os.environ.get("CLEARHOUSE_CLIENT_SECRET", "")
RATE_PER_USER = float(os.environ.get("LOCUST_RATE_PER_USER") or 1)
MANUAL_SHARE = float(os.environ.get("LOCUST_MANUAL_SHARE") or 0.2)
REFUND_SHARE = float(os.environ.get("LOCUST_REFUND_SHARE") or 0.2)
DECLINE_SHARE = float(os.environ.get("LOCUST_DECLINE_SHARE") or 0)
POLL_TIMEOUT_S = float(os.environ.get("LOCUST_POLL_TIMEOUT_S") or 60)
CA_FILE = os.environ.get("CLEARHOUSE_CA_FILE", "")
CLIENT_CERT_FILE = os.environ.get("CLEARHOUSE_CLIENT_CERT_FILE", "")
CLIENT_KEY_FILE = os.environ.get("CLEARHOUSE_CLIENT_KEY_FILE", "")

FINAL = {"succeeded", "failed", "canceled", "requires_capture"}
PRIORITIES = (("instant", 0.2), ("standard", 0.6), ("economy", 0.2))
# USD cents, $5..$50: far below the fraud rules' "first-time large amount" bar, and
# within 20x of each other (the "unusual for this merchant" rule).
AMOUNTS = (500, 5_000)
# The sandbox's decline cards and the failure each ends with, every time.
DECLINES = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
}
# Retried with the same key and counted as fine: the API asking the client to come back.
BACKPRESSURE = {409, 429, 503}
# Retried with the same key too, but each one fails the run: the server broke.
BROKEN = {0, 500, 502, 504}  # 0: locust's status for a connection error
MAX_ATTEMPTS = 8
TOKEN_MARGIN_S = 60


@events.init.add_listener
def _check_credentials(environment, **_):
    if not (CLIENT_ID and CLIENT_SECRET):
        sys.exit(
            "set CLEARHOUSE_CLIENT_ID and CLEARHOUSE_CLIENT_SECRET "
            "(from `clearhouse merchant create --name Load --json`), or run `make locust`"
        )


# The card generator and the weighted pick below copy tests/load/mix.py (and the
# Luhn card of tests/factories.py) on purpose: the locustfile imports nothing from
# the project, so that it runs where only locust is installed.
def luhn_complete(digits: str) -> str:
    """``digits`` followed by the check digit that makes the number Luhn-valid."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


def fresh_visa(rng: random.Random) -> str:
    """A 16-digit Visa number that the sandbox approves, a new payer each time."""
    return luhn_complete("45" + "".join(rng.choice("0123456789") for _ in range(13)))


def _pick(rng: random.Random, weighted) -> str:
    x = rng.random()
    for value, share in weighted:
        x -= share
        if x < 0:
            return value
    return weighted[-1][0]


def _retry_after(resp, attempt: int, rng: random.Random) -> float:
    header = resp.headers.get("Retry-After") if resp.headers else None
    try:
        wait = float(header)
    except (TypeError, ValueError):
        wait = 0.1 * 2**attempt
    return min(wait, 5.0) * (0.5 + rng.random())  # jitter: retries do not march in step


def tls_context(cafile=None) -> ssl.SSLContext:
    """The context of every HTTPS connection: our CA (when given) and client certificate."""
    # geventhttpclient offers its own CA bundle as ``cafile``; the dev CA replaces it.
    context = ssl.create_default_context(cafile=CA_FILE or cafile)
    if CLIENT_CERT_FILE:
        context.load_cert_chain(CLIENT_CERT_FILE, CLIENT_KEY_FILE or None)
    return context


class Merchant(FastHttpUser):
    wait_time = constant_throughput(RATE_PER_USER)
    # Locust's default is not to check the server's certificate at all.
    insecure = False
    ssl_context_factory = staticmethod(tls_context)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.token = ""
        self.refresh_at = 0.0

    # --- HTTP ------------------------------------------------------------------

    def _token(self) -> str:
        if self.token and time.monotonic() < self.refresh_at:
            return self.token
        body = {
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        for attempt in range(MAX_ATTEMPTS):
            with self.client.post(
                "/v1/oauth/token", json=body, name="/v1/oauth/token", catch_response=True
            ) as resp:
                if resp.status_code == 200:
                    doc = resp.json()
                    ttl = int(doc.get("expires_in") or 900)
                    self.token = doc["access_token"]
                    self.refresh_at = time.monotonic() + max(ttl - TOKEN_MARGIN_S, ttl / 2)
                    return self.token
                fatal = resp.status_code not in BACKPRESSURE | BROKEN
                if fatal:
                    resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                else:
                    self._retried(resp)
            if fatal:
                raise StopUser()  # wrong credentials do not get better (the run fails)
            time.sleep(_retry_after(resp, attempt, self.rng))
        self._flow_failed("token", f"no token after {MAX_ATTEMPTS} attempts")
        raise StopUser()

    def _retried(self, resp) -> None:
        """A response the caller retries: a failure if the server broke, else renamed."""
        if resp.status_code in BROKEN:
            resp.failure(f"HTTP {resp.status_code} (retried with the same key)")
        else:
            resp.request_meta["name"] += f" (retried {resp.status_code})"
            resp.success()

    def _post(self, path: str, name: str, body: dict, expect: int):
        """POST under one Idempotency-Key, retried with that key until ``expect``."""
        key = f"locust-{uuid.uuid4().hex}"
        reauthorized = False
        for attempt in range(MAX_ATTEMPTS):
            headers = {"Authorization": f"Bearer {self._token()}", "Idempotency-Key": key}
            with self.client.post(
                path, json=body, headers=headers, name=name, catch_response=True
            ) as resp:
                if resp.status_code == expect:
                    return resp.json()
                if resp.status_code == 401 and not reauthorized:
                    # The token expired or was rotated: a fresh one, the same key.
                    reauthorized, self.refresh_at = True, 0.0
                    resp.request_meta["name"] += " (retried 401)"
                    resp.success()
                    continue
                if resp.status_code not in BACKPRESSURE | BROKEN:
                    resp.failure(f"HTTP {resp.status_code}: {resp.text[:300]}")
                    return None
                self._retried(resp)
            time.sleep(_retry_after(resp, attempt, self.rng))
        self._flow_failed(name, f"no {expect} after {MAX_ATTEMPTS} attempts with one key")
        return None

    def _get(self, path: str, name: str):
        headers = {"Authorization": f"Bearer {self._token()}"}
        with self.client.get(path, headers=headers, name=name, catch_response=True) as resp:
            if resp.status_code == 200:
                return resp.json()
            if resp.status_code == 401:
                self.refresh_at = 0.0
            if resp.status_code in BACKPRESSURE:
                self._retried(resp)  # a poll is retried by the poll loop anyway
            else:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:300]}")
            return None

    def _flow(self, name: str, started: float, problem: str | None = None) -> None:
        """A FLOW row in the summary: one end-to-end check, timed from the create."""
        self.environment.events.request.fire(
            request_type="FLOW",
            name=name,
            response_time=(time.monotonic() - started) * 1000,
            response_length=0,
            exception=AssertionError(problem) if problem else None,
            context={},
        )

    def _flow_failed(self, name: str, problem: str) -> None:
        self._flow(name, time.monotonic(), problem)

    # --- the payment flow -------------------------------------------------------

    def _intent_body(self) -> tuple[dict, str | None]:
        """A create body and the failure code its card must end with (None: approved)."""
        rng = self.rng
        expected = None
        number = fresh_visa(rng)
        if rng.random() < DECLINE_SHARE:
            number = rng.choice(sorted(DECLINES))
            expected = DECLINES[number]
        body = {
            "amount": rng.randint(*AMOUNTS),
            "currency": "USD",
            "capture_method": "manual" if rng.random() < MANUAL_SHARE else "automatic",
            "priority": _pick(rng, PRIORITIES),
            "payment_method": {
                "type": "card",
                "card": {
                    "number": number,
                    "exp_month": rng.randint(1, 12),
                    "exp_year": datetime.now(UTC).year + rng.randint(1, 5),
                    "cvc": f"{rng.randrange(1000):03d}",
                },
            },
            "description": "locust",
            "metadata": {"source": "locust"},
        }
        return body, expected

    def _poll(self, intent: dict, started: float) -> dict | None:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        path = f"/v1/payment_intents/{intent['id']}"
        while intent["status"] not in FINAL:
            if time.monotonic() > deadline:
                self._flow(
                    "intent reaches a final status",
                    started,
                    f"{intent['id']} still {intent['status']}/{intent.get('stage')}"
                    f" after {POLL_TIMEOUT_S:g} s",
                )
                return None
            time.sleep(0.2 + 0.2 * self.rng.random())  # polling interval
            intent = self._get(path, "/v1/payment_intents/{id}") or intent
        self._flow("intent reaches a final status", started)
        return intent

    @task
    def pay(self) -> None:
        body, expected_failure = self._intent_body()
        started = time.monotonic()
        intent = self._post("/v1/payment_intents", "/v1/payment_intents", body, 202)
        if intent is None:
            return
        intent = self._poll(intent, started)
        if intent is None:
            return
        status = intent["status"]
        if expected_failure is not None:
            if status != "failed" or intent.get("failure_code") != expected_failure:
                self._flow("decline card fails", started, f"{intent['id']} ended {status}")
            return
        want = "requires_capture" if body["capture_method"] == "manual" else "succeeded"
        if status != want:
            problem = f"{intent['id']} ended {status} ({intent.get('failure_code')}), not {want}"
            self._flow("approved card is paid", started, problem)
            return
        if status == "requires_capture":
            intent = self._capture(intent)
            if intent is None:
                return
        self._flow("approved card is paid", started)
        if self.rng.random() < REFUND_SHARE:
            self._refund(intent)

    def _capture(self, intent: dict) -> dict | None:
        body = {}
        if self.rng.random() < 0.3:  # part of it; the rest of the hold is released
            body["amount_to_capture"] = max(1, intent["amount"] * self.rng.randint(30, 99) // 100)
        path = f"/v1/payment_intents/{intent['id']}/capture"
        captured = self._post(path, "/v1/payment_intents/{id}/capture", body, 200)
        if captured is not None and captured["status"] != "succeeded":
            self._flow_failed("capture succeeds", f"{intent['id']} is {captured['status']}")
            return None
        return captured

    def _refund(self, intent: dict) -> None:
        body = {"payment_intent": intent["id"], "reason": "requested_by_customer"}
        received = intent.get("amount_received") or intent["amount"]
        if self.rng.random() < 0.5 and received > 1:
            body["amount"] = self.rng.randint(1, received - 1)
        refund = self._post("/v1/refunds", "/v1/refunds", body, 200)
        if refund is not None and refund.get("status") != "succeeded":
            self._flow_failed("refund succeeds", f"{refund.get('id')} is {refund.get('status')}")
