"""What an erasure does to an intent or a refund, as the API shows them (pure)."""

from __future__ import annotations

from shared.domain import erasure as E

INTENT = {
    "id": "pi_1",
    "object": "payment_intent",
    "amount": 1050,
    "status": "succeeded",
    "description": "Order 1001 for Ada",
    "metadata": {"email": "ada@example.com"},
    "customer": "cus_ada",
    "payment_method": {"type": "card", "card": {"last4": "4242", "brand": "visa"}},
}


def test_an_intent_keeps_ids_amounts_and_status_and_loses_its_personal_data():
    out = E.tombstone_object(INTENT)
    assert out["customer"] == out["description"] == E.TOMBSTONE
    assert out["metadata"] == {}
    keep = ("id", "object", "amount", "status", "payment_method")
    assert {k: out[k] for k in keep} == {k: INTENT[k] for k in keep}
    assert INTENT["customer"] == "cus_ada"  # the input is not changed


def test_a_field_that_held_nothing_stays_empty():
    out = E.tombstone_object({**INTENT, "description": None})
    assert out["description"] is None and out["customer"] == E.TOMBSTONE


def test_a_refund_loses_its_metadata_only():
    refund = {"id": "re_1", "object": "refund", "amount": 5, "metadata": {"note": "Ada"}}
    assert E.tombstone_object(refund) == {**refund, "metadata": {}}


def test_other_objects_and_non_objects_are_left_alone():
    settlement = {"id": "st_1", "object": "settlement", "amount": 5}
    assert E.tombstone_object(settlement) == settlement
    assert E.tombstone_object(["cus_ada"]) == ["cus_ada"]


def test_a_stored_response_is_erased_only_when_it_shows_one_of_the_ids():
    refund = {"id": "re_1", "object": "refund", "payment_intent": "pi_1", "metadata": {"a": "b"}}
    assert E.tombstone_response(INTENT, {"pi_1"})["customer"] == E.TOMBSTONE
    assert E.tombstone_response(refund, {"pi_1"})["metadata"] == {}
    assert E.tombstone_response(INTENT, {"pi_2"}) == INTENT
    problem = {"type": "about:blank", "status": 400, "detail": "x"}
    assert E.tombstone_response(problem, {"pi_1"}) == problem


def test_the_customer_key_is_ascii_and_names_merchant_and_customer_apart():
    key = E.customer_key("mch_1", "Zoë")
    assert key.isascii() and "Zoë" not in key
    assert key != E.customer_key("mch_2", "Zoë") and key != E.customer_key("mch_1", "Zoe")
