"""Erasure of a customer's personal data: what is erased, and what it becomes.

Pure: the erasure service applies these to the rows and to the stored JSON
copies of them (events, idempotency responses), so every copy gets the same
tombstone. Financial facts (ids, amounts, statuses, the ledger) are never
touched: the law requires them to be kept.
"""

from __future__ import annotations

# What an erased text field reads from then on (a field that was empty stays empty).
TOMBSTONE = "[erased]"
# Columns of payment_intents the erasure rewrites; client_ip becomes NULL (it is
# our own record of the request, never shown: NULL is what "unknown" is).
INTENT_FIELDS = ("customer", "description", "metadata", "client_ip")
# Fields of a payment_intent object (API, events, stored responses) that are erased.
_TEXT_FIELDS = ("customer", "description")


def tombstone_text(value: str | None) -> str | None:
    """The erased form of a text field: the tombstone, or None if it held nothing."""
    return None if value is None else TOMBSTONE


def tombstone_object(obj: object) -> object:
    """A JSON object (an intent or a refund, as the API shows them) with its personal data erased.

    Anything else (a list, a settlement, a problem body) comes back unchanged.
    """
    if not isinstance(obj, dict):
        return obj
    kind = obj.get("object")
    if kind == "payment_intent":
        out = {**obj, "metadata": {}}
        for name in _TEXT_FIELDS:
            if name in obj:
                out[name] = tombstone_text(obj[name])
        return out
    if kind == "refund":
        return {**obj, "metadata": {}}
    return obj


def tombstone_response(body: object, ids: set[str]) -> object:
    """A stored response body, erased if it shows one of ``ids`` (intents or their refunds)."""
    if isinstance(body, dict) and (body.get("id") in ids or body.get("payment_intent") in ids):
        return tombstone_object(body)
    return body


def customer_key(merchant_id: str, customer: str) -> str:
    """The message whose keyed hash names an erased customer (never the value itself).

    Hex of the UTF-8 bytes: the MAC takes ASCII, a customer id may be any text.
    """
    return f"erased-customer:{merchant_id}:{customer.encode().hex()}"
