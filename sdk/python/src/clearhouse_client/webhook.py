"""Verifying webhooks: ``Webhook.construct_event(payload, header, secret)``.

The API signs each delivery ``Clearhouse-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``
with ``v1 = HMAC-SHA256(secret, "<t>.<raw body>")``; during a secret rotation it
sends one ``v1`` per live secret. A receiver accepts the delivery if any ``v1``
matches its secret and ``t`` is within ``tolerance`` seconds of its clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from clearhouse_client.errors import SignatureVerificationError
from clearhouse_client.objects import Event

SIGNATURE_HEADER = "Clearhouse-Signature"
DEFAULT_TOLERANCE_S = 300


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)


class WebhookSignature:
    @staticmethod
    def compute(payload: bytes | str, secret: str, timestamp: int) -> str:
        """The hex ``v1`` value for ``payload`` signed at ``timestamp``."""
        signed = f"{timestamp}.".encode() + _as_bytes(payload)
        return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()

    @staticmethod
    def verify_header(
        payload: bytes | str,
        header: str | None,
        secret: str,
        tolerance: float | None = DEFAULT_TOLERANCE_S,
        now: float | None = None,
    ) -> int:
        """Check ``header`` against the raw ``payload``; return its timestamp or raise.

        ``tolerance=None`` skips the clock check (for replaying stored deliveries
        in tests, never in a receiver).
        """
        timestamp, candidates = _parse(header)
        if timestamp is None:
            raise SignatureVerificationError("No timestamp in the signature header.", header)
        if not candidates:
            raise SignatureVerificationError("No v1 signature in the signature header.", header)
        expected = WebhookSignature.compute(payload, secret, timestamp).encode()
        # Every candidate is compared, so the time taken says nothing about which matched
        # (as bytes: compare_digest refuses str with non-ASCII characters).
        matches = [hmac.compare_digest(expected, c.encode("utf-8")) for c in candidates]
        if not any(matches):
            raise SignatureVerificationError(
                "No v1 signature matches the payload and this secret.", header, payload
            )
        now = time.time() if now is None else now
        if tolerance is not None and abs(now - timestamp) > tolerance:
            raise SignatureVerificationError(
                f"The signature's timestamp is more than {tolerance:g} s from now.", header
            )
        return timestamp


def _parse(header: str | None) -> tuple[int | None, list[str]]:
    timestamp, candidates = None, []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    return timestamp, candidates


class Webhook:
    @staticmethod
    def construct_event(
        payload: bytes | str,
        header: str | None,
        secret: str,
        tolerance: float | None = DEFAULT_TOLERANCE_S,
    ) -> Event:
        """The verified event of one delivery, or SignatureVerificationError.

        ``payload`` must be the raw request body as received: parsed and
        re-serialized JSON no longer matches its signature.
        """
        WebhookSignature.verify_header(payload, header, secret, tolerance)
        try:
            data = json.loads(_as_bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SignatureVerificationError(
                f"The signed payload is not JSON: {exc}", header
            ) from exc
        if not isinstance(data, dict) or data.get("object") != "event":
            raise SignatureVerificationError("The signed payload is not an event.", header)
        return Event.from_json(data)
