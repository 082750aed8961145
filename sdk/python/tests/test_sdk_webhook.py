"""Webhook.construct_event: every v1 is tried, the timestamp window holds, the event is typed.

The real API's deliveries are verified in the repository's tests/e2e/test_sdk_stack.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from clearhouse_client import Event, PaymentIntent, SignatureVerificationError, Webhook
from clearhouse_client.webhook import WebhookSignature

SECRET = "whsec_test"
EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "payment_intent.succeeded",
    "created": 1,
    "data": {"object": {"id": "pi_1", "object": "payment_intent", "status": "succeeded"}},
}
PAYLOAD = json.dumps(EVENT).encode()


def v1(secret: str, t: int, payload: bytes = PAYLOAD) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()


def header(t: int, *secrets: str) -> str:
    return ",".join([f"t={t}", *(f"v1={v1(s, t)}" for s in secrets)])


def test_a_good_signature_gives_the_typed_event():
    event = Webhook.construct_event(PAYLOAD, header(int(time.time()), SECRET), SECRET)
    assert isinstance(event, Event) and event.id == "evt_1"
    assert isinstance(event.data, PaymentIntent) and event.data.status == "succeeded"
    assert event.raw == EVENT
    # A str payload is the same bytes in UTF-8.
    assert Webhook.construct_event(PAYLOAD.decode(), header(int(time.time()), SECRET), SECRET)


def test_any_of_several_v1_values_verifies_during_a_rotation():
    now = int(time.time())
    both = header(now, "whsec_old", "whsec_new")
    assert Webhook.construct_event(PAYLOAD, both, "whsec_old").id == "evt_1"
    assert Webhook.construct_event(PAYLOAD, both, "whsec_new").id == "evt_1"
    with pytest.raises(SignatureVerificationError):
        Webhook.construct_event(PAYLOAD, both, "whsec_other")


@pytest.mark.parametrize(
    ("payload", "make_header", "why"),
    [
        (PAYLOAD.replace(b"succeeded", b"failed", 1), lambda t: header(t, SECRET), "No v1"),
        (PAYLOAD, lambda t: header(t, "whsec_wrong"), "No v1"),
        (PAYLOAD, lambda t: header(t - 301, SECRET), "timestamp"),
        (PAYLOAD, lambda t: header(t + 301, SECRET), "timestamp"),
        (PAYLOAD, lambda t: f"v1={v1(SECRET, t)}", "No timestamp"),
        (PAYLOAD, lambda t: f"t={t}", "No v1 signature in"),
        (PAYLOAD, lambda t: f"t={t},v1=ñ{v1(SECRET, t)[1:]}", "No v1"),
        (PAYLOAD, lambda t: "", "No timestamp"),
        (PAYLOAD, lambda t: f"t={t},v1={v1(SECRET, t + 1)}", "No v1"),  # signed for another t
    ],
)
def test_a_tampered_forged_or_stale_delivery_is_refused(payload, make_header, why):
    with pytest.raises(SignatureVerificationError) as caught:
        Webhook.construct_event(payload, make_header(int(time.time())), SECRET)
    assert why in str(caught.value)


def test_the_tolerance_is_the_receivers_choice():
    old = int(time.time()) - 1000
    with pytest.raises(SignatureVerificationError):
        Webhook.construct_event(PAYLOAD, header(old, SECRET), SECRET)
    assert Webhook.construct_event(PAYLOAD, header(old, SECRET), SECRET, tolerance=2000)
    assert Webhook.construct_event(PAYLOAD, header(old, SECRET), SECRET, tolerance=None)


def test_a_signed_payload_that_is_not_an_event_is_refused():
    for body in (b"not json", b"[1, 2]", json.dumps({"object": "refund"}).encode()):
        t = int(time.time())
        signed = f"t={t},v1={v1(SECRET, t, body)}"
        with pytest.raises(SignatureVerificationError):
            Webhook.construct_event(body, signed, SECRET)


def test_compute_matches_the_documented_scheme():
    assert WebhookSignature.compute(PAYLOAD, SECRET, 1700000000) == v1(SECRET, 1700000000)
