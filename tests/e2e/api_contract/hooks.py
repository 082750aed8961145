"""schemathesis hooks (SCHEMATHESIS_HOOKS): the API's own check on top of every built-in one.

positive_data_acceptance is told to accept a 400 for a schema-valid request
(schemathesis.toml): the spec's 400 also stands for the rules a schema cannot
state (a Luhn checksum, an expiry in the past, a currency's maximum, the
object's state, a report period that has not begun), answered 400 as Stripe
answers invalid requests. This check keeps that honest: a 400 to a
schema-valid request must name one of those rules, so a schema that forgets
a constraint still fails here.
"""

from __future__ import annotations

import json
import uuid

import schemathesis
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

CARD = "payment_method[card]"
# (code, param) of every refusal of a schema-valid request (400, or 422 for a reused key).
RULES = {
    ("invalid_number", f"{CARD}[number]"),  # Luhn checksum
    ("invalid_expiry_year", f"{CARD}[exp_year]"),  # expiry in the past, or > 50 years ahead
    ("invalid_cvc", f"{CARD}[cvc]"),  # 4 digits for amex, 3 for the others
    ("amount_too_large", "amount"),  # the currency's maximum, or the refundable amount
    ("amount_too_large", "amount_to_capture"),  # the currency's maximum, or the capturable
    ("resource_missing", "payment_method[wallet_id]"),  # no such wallet
    ("parameter_invalid", "currency"),  # the wallet holds another currency
    ("resource_missing", "payment_method[bank]"),  # a bank outside BANKS
    ("parameter_invalid", "capture_method"),  # manual capture of a bank_account payment
    ("idempotency_key_reused", "Idempotency-Key"),  # the key was used with another request
    ("invalid_request", "endpoint"),  # redelivery: no (or several) enabled endpoints receive it
    ("invalid_request", "url"),  # a webhook endpoint's URL refused (scheme, host, SSRF policy)
    ("parameter_invalid", "enabled_events"),  # ["*"] and event types together
    ("payment_intent_unexpected_state", None),  # the intent's state forbids it
    ("charge_already_refunded", None),  # nothing left to refund
    # An operator's new password: the email, a common password (a list no schema holds).
    ("password_too_weak", "new_password"),
    # A report period that has not begun, a week its year does not have (W53 of a
    # 52-week year), or year 0000.
    ("parameter_invalid", "week"),
    ("parameter_invalid", "month"),
}
# RFC 6749's errors, on the OAuth endpoints only (whatever param they name): a grant
# missing what its type needs, a token unknown, expired or revoked, a scope never granted.
OAUTH = {"invalid_request", "invalid_grant", "invalid_scope", "unsupported_grant_type"}


def _schema_valid(case) -> bool:
    meta = getattr(case, "meta", None)
    return meta is None or meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.check
def refusal_names_a_rule(ctx, response, case):
    """A schema-valid request refused with 400 or 422 is refused by a stated rule."""
    if response.status_code not in (400, 422) or not _schema_valid(case):
        return None
    body = json.loads(response.content)
    found = (body.get("code"), body.get("param"))
    if case.operation.path.startswith("/v1/oauth/") and found[0] in OAUTH:
        return None
    if found not in RULES:
        raise AssertionError(
            f"{response.status_code} for no stated rule: {found} ({body.get('detail')})"
        )
    return None


def _luhn_complete(digits: str) -> str:
    """``digits`` and the check digit that makes them Luhn-valid."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return digits + str((10 - total % 10) % 10)


# The document's `format: card-number`: Luhn-valid numbers, so that generated requests
# reach past the checksum (into expiry, CVC, the intent's creation) instead of stopping there.
schemathesis.openapi.format(
    "card-number",
    st.sampled_from(["4", "5", "37", "6011"]).flatmap(
        lambda prefix: st.text(
            "0123456789", min_size=15 - len(prefix), max_size=15 - len(prefix)
        ).map(lambda rest, p=prefix: _luhn_complete(p + rest))
    ),
)


# Webhook endpoints are the one created object that can be deleted. Reusing a key
# replays its first answer, as Stripe's API does, so a create whose key hypothesis
# drew again after the endpoint was deleted answers with the deleted endpoint's id,
# and the link to GET it is a 404 that is correct behaviour (seen in CI: `st replay
# u0TESL`). Each of these creates gets a fresh key; key reuse itself is checked on
# the other creates here and in tests/integration.
_SEEN_ENDPOINT_KEYS: set[str] = set()


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.method.upper() != "POST" or case.operation.path != "/v1/webhook_endpoints":
        return
    headers = case.headers if case.headers is not None else {}
    key = headers.get("Idempotency-Key")
    if key is not None and key in _SEEN_ENDPOINT_KEYS:
        headers["Idempotency-Key"] = uuid.uuid4().hex
        case.headers = headers
    _SEEN_ENDPOINT_KEYS.add(headers.get("Idempotency-Key") or "")
