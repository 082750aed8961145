"""schemathesis hooks (SCHEMATHESIS_HOOKS): the API's own check on top of every built-in one.

positive_data_acceptance is told to accept a 422 for a schema-valid request
(schemathesis.toml): the spec says so, for rules a schema cannot state. This
check keeps that honest: a 422 must name one of those rules, so a schema that
forgets a constraint still fails here instead of hiding behind the 422.
"""

from __future__ import annotations

import json

import schemathesis
from hypothesis import strategies as st

CARD = "payment_method[card]"
# (code, param) of every refusal the spec's 422 stands for.
RULES = {
    ("invalid_number", f"{CARD}[number]"),  # Luhn checksum
    ("invalid_expiry_year", f"{CARD}[exp_year]"),  # expiry in the past, or > 50 years ahead
    ("invalid_cvc", f"{CARD}[cvc]"),  # 4 digits for amex, 3 for the others
    ("amount_too_large", "amount"),  # the currency's maximum, or the refundable amount
    ("amount_too_large", "amount_to_capture"),  # the currency's maximum, or the capturable
    ("resource_missing", "payment_method[wallet_id]"),  # no such wallet
    ("parameter_invalid", "currency"),  # the wallet holds another currency
    ("idempotency_key_reused", "Idempotency-Key"),  # the key was used with another request
    ("invalid_request", "webhook_url"),  # redelivery with no webhook URL configured
}


@schemathesis.check
def unprocessable_names_a_rule(ctx, response, case):
    """A 422 is one of the rules the spec's 422 describes."""
    if response.status_code != 422:
        return None
    body = json.loads(response.content)
    found = (body.get("code"), body.get("param"))
    if found not in RULES:
        raise AssertionError(f"422 for no stated rule: {found} ({body.get('detail')})")
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
