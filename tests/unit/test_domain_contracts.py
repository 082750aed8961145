"""Exact contracts of the pure domain modules: boundaries, names and messages.

The other unit tests check that the rules work; these pin what callers and
stored data depend on to the letter: limit defaults and counter keys, every
limit's name, account codes, the seal format, reason details shown to
operators, error messages, and each bound just inside and just outside. They
were written against the mutants ``make mutation`` found surviving.
"""

from __future__ import annotations

import hashlib
import random
import time
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shared.domain import fraud
from shared.domain import hashchain as hc
from shared.domain import ledger as L
from shared.domain import webhooks as W
from shared.domain.cards import card_brand, expiry_valid, last4, luhn_valid, normalize_pan
from shared.domain.fees import DEFAULT_FEE_PLAN, compute_fee, plan_from_json
from shared.domain.limits import (
    Decision,
    LimitRequest,
    Limits,
    allocate,
    counter_keys,
    default_limits,
)
from shared.domain.refunds import fee_refund, fee_returned, validate_create
from shared.domain.validation import MAX_ID_LEN, ValidationError

# --- limits ------------------------------------------------------------------


def test_default_limits_in_minor_units():
    assert default_limits("merchant", 100) == Limits(None, 1_000_000_000, 10_000_000_000)
    assert default_limits("payer", 100) == Limits(None, 100_000_000, 1_000_000_000)
    assert default_limits("merchant", 1) == Limits(None, 10_000_000, 100_000_000)
    assert default_limits("payer", 10**18).monthly == 10_000_000 * 10**18


def test_counter_keys_exactly():
    assert counter_keys("mch_1", "card:fp", "EUR", date(2026, 1, 5)) == (
        "m:mch_1:EUR:d:2026-01-05",
        "m:mch_1:EUR:m:2026-01",
        "p:mch_1:card:fp:EUR:d:2026-01-05",
        "p:mch_1:card:fp:EUR:m:2026-01",
    )


KEYS = counter_keys("mch_1", "wallet:w", "USD", date(2026, 1, 5))
LIMIT_NAMES = {
    "merchant_per_transaction": "merchant per-transaction",
    "payer_per_transaction": "payer per-transaction",
    "merchant_daily": "merchant daily",
    "merchant_monthly": "merchant monthly",
    "payer_daily": "payer daily",
    "payer_monthly": "payer monthly",
}


def request(limit: str, value: int, amount: int, intent_id: str = "pi_1") -> LimitRequest:
    scope, field = limit.split("_", 1)
    limits = Limits(**{field: value})
    return LimitRequest(
        intent_id,
        amount,
        limits if scope == "merchant" else Limits(),
        limits if scope == "payer" else Limits(),
        KEYS,
    )


@pytest.mark.parametrize("limit", sorted(LIMIT_NAMES))
def test_each_limit_is_inclusive_and_named(limit):
    # Exactly the limit, with nothing used yet, fits; one more does not.
    assert allocate([request(limit, 500, 500)], {}) == [Decision("pi_1", True, None)]
    assert allocate([request(limit, 500, 501, "pi_2")], {}) == [
        Decision("pi_2", False, LIMIT_NAMES[limit])
    ]


@pytest.mark.parametrize(
    ("limit", "key"),
    [("merchant_daily", 0), ("merchant_monthly", 1), ("payer_daily", 2), ("payer_monthly", 3)],
)
def test_each_counter_counts_against_its_own_limit(limit, key):
    used = {KEYS[key]: 400}
    assert allocate([request(limit, 500, 100)], used)[0].accepted
    assert allocate([request(limit, 500, 101)], used)[0].reason == LIMIT_NAMES[limit]
    # Usage on the other counters does not count against this one.
    others = {k: 10**9 for i, k in enumerate(KEYS) if i != key}
    assert allocate([request(limit, 500, 500)], others)[0].accepted


def test_per_transaction_limits_ignore_usage():
    used = dict.fromkeys(KEYS, 10**9)
    assert allocate([request("payer_per_transaction", 500, 500)], used)[0].accepted


# --- ledger ------------------------------------------------------------------


def test_account_codes():
    assert L.account_code("merchant_pending", "USD", "mch_1") == "merchant:mch_1:pending:USD"
    assert L.account_code("merchant_available", "JPY", "mch_1") == "merchant:mch_1:available:JPY"
    assert L.account_code("fees", "EUR") == "platform:fees:EUR"
    assert L.account_code("card_clearing", "GBP") == "external:card_clearing:GBP"
    assert L.account_code("wallet_funding", "USDC") == "external:wallet_funding:USDC"
    assert L.account_code("wallet", "USD", "wal_1") == "wallet:wal_1"
    with pytest.raises(KeyError):
        L.account_code("nope", "USD")


def test_spendable_is_posted_credits_less_posted_and_pending_debits():
    assert L.Balance(debits_pending=3, debits_posted=5, credits_posted=20).spendable() == 12
    assert L.Balance(credits_pending=7).spendable() == 0  # pending credits are not money yet


def _t(kind, amount, pending_amount=0):
    return L.Transfer(kind, 1, 2, amount, "USD", "test", pending_amount=pending_amount)


def test_posting_all_of_a_hold_is_allowed():
    d = L.Deltas()
    d.apply(_t(L.POST_PENDING, 100, pending_amount=100))
    assert d.by_account == {1: [-100, 100, 0, 0], 2: [0, 0, -100, 100]}


def test_expire_releases_the_hold_like_a_void():
    d = L.Deltas()
    d.apply(_t(L.EXPIRE_PENDING, 0, pending_amount=40))
    assert d.by_account == {1: [-40, 0, 0, 0], 2: [0, 0, -40, 0]}


@pytest.mark.parametrize(
    ("transfer", "message"),
    [
        (_t(L.PENDING, 0), "transfer amount must be positive"),
        (_t(L.POST_PENDING, -1, 5), "transfer amount must be positive"),
        (_t(L.POST_PENDING, 6, 5), "cannot post more than the pending amount"),
        (_t("refund", 5), "unknown transfer kind 'refund'"),
    ],
)
def test_refused_transfers_say_why(transfer, message):
    with pytest.raises(ValueError) as exc:
        L.Deltas().apply(transfer)
    assert str(exc.value) == message


# --- refunds -----------------------------------------------------------------


def test_fee_returned_bounds():
    assert fee_returned(1, 1, 1) == 1  # the smallest payment refunded in full
    assert fee_returned(5, 10, 0) == 0
    for fee, received, refunded in ((1, 0, 0), (1, -1, 0), (1, 10, -1), (1, 10, 11)):
        with pytest.raises(ValueError) as exc:
            fee_returned(fee, received, refunded)
        assert str(exc.value) == "refunded must be between 0 and the received amount"
    assert fee_refund(56, 1020, 0, 510) == 28


def refund_error(body) -> tuple[str, str, str]:
    with pytest.raises(ValidationError) as exc:
        validate_create(body)
    return exc.value.param, exc.value.code, exc.value.message


def test_refund_request_messages_and_bounds():
    assert refund_error({}) == (
        "payment_intent",
        "parameter_missing",
        "Missing required param: payment_intent.",
    )
    for bad in ("", "p" * (MAX_ID_LEN + 1), 7):
        assert refund_error({"payment_intent": bad}) == (
            "payment_intent",
            "parameter_invalid",
            "`payment_intent` must be an intent id.",
        )
    assert validate_create({"payment_intent": "p" * MAX_ID_LEN}).payment_intent == "p" * 255
    assert refund_error({"payment_intent": "pi_1", "amount": 2.0}) == (
        "amount",
        "parameter_invalid_integer",
        "`amount` must be an integer in the currency's minor unit (not a float or string).",
    )
    assert refund_error({"payment_intent": "pi_1", "amount": 0}) == (
        "amount",
        "amount_too_small",
        "`amount` must be at least 1.",
    )
    assert validate_create({"payment_intent": "pi_1", "amount": 1}).amount == 1
    assert refund_error({"payment_intent": "pi_1", "reason": "bored"}) == (
        "reason",
        "parameter_invalid",
        "`reason` must be one of: duplicate, fraudulent, requested_by_customer.",
    )
    for reason in ("duplicate", "fraudulent", "requested_by_customer"):
        assert validate_create({"payment_intent": "pi_1", "reason": reason}).reason == reason
    assert refund_error([]) == (
        "body",
        "parameter_invalid",
        "The request body must be a JSON object.",
    )


# --- cards -------------------------------------------------------------------


def test_pan_length_bounds():
    assert normalize_pan("4" * 12) == "4" * 12
    assert normalize_pan("4" * 19) == "4" * 19
    for n in (11, 20):
        with pytest.raises(ValueError) as exc:
            normalize_pan("4" * n)
        assert str(exc.value) == "card number must have 12 to 19 digits"


def test_normalize_pan_messages_and_every_allowed_character():
    assert normalize_pan("0123-4567 8901 2345") == "0123456789012345"
    with pytest.raises(ValueError) as exc:
        normalize_pan(4242424242424242)
    assert str(exc.value) == "card number must be a string"
    with pytest.raises(ValueError) as exc:
        normalize_pan("4242.4242.4242.4242")
    assert str(exc.value) == "card number may contain only digits, spaces and dashes"


def test_card_helpers_at_their_bounds():
    assert luhn_valid("18") and luhn_valid("00")  # two digits is enough for a checksum
    assert last4("1234") == "1234"
    assert last4("01234567890123456789") == "6789"  # every digit is a digit
    with pytest.raises(ValueError) as exc:
        last4("123")
    assert str(exc.value) == "card number too short for last4"
    assert card_brand(4242424242424242) == "unknown"
    assert card_brand("4abc") == "unknown"


def test_expiry_year_bounds():
    assert expiry_valid(1, 1000, date(1000, 1, 1))
    assert not expiry_valid(12, 999, date(999, 1, 1))
    today = date(2026, 11, 22)
    assert expiry_valid(12, today.year + 50, today)
    assert not expiry_valid(1, today.year + 51, today)


# --- fraud -------------------------------------------------------------------

CLEAN = fraud.FraudSignals(
    amount=5_000,
    currency="USD",
    test_card=None,
    card_velocity=0,
    ip_velocity=0,
    payer_history_count=10,
    payer_history_avg=4_000,
    merchant_history_avg=6_000,
    blocklisted=(),
    recent_declines=0,
)


def details(**changes) -> dict[str, tuple[int, str]]:
    import dataclasses

    a = fraud.assess(dataclasses.replace(CLEAN, **changes), fraud.Thresholds.below(75))
    return {r.code: (r.points, r.detail) for r in a.reasons}


def test_reason_details_are_exact():
    card = fraud.SandboxCard
    assert details(test_card=card.FRAUD) == {"fraud_test_card": (100, "known fraud test card")}
    assert details(test_card=card.HIGHEST_RISK) == {
        "highest_risk_test_card": (100, "test card: highest risk")
    }
    assert details(test_card=card.ELEVATED_RISK) == {
        "elevated_risk_test_card": (65, "test card: elevated risk")
    }
    assert details(test_card=card.PLAIN, card_velocity=11) == {}
    assert details(blocklisted=("ip", "card_fingerprint", "ip")) == {
        "blocklisted": (100, "blocklist match: card_fingerprint, ip")
    }
    assert details(card_velocity=11) == {
        "card_velocity": (50, "11 other intents from this card in 600 s")
    }
    assert details(card_velocity=6) == {
        "card_velocity": (30, "6 other intents from this card in 600 s")
    }
    assert details(ip_velocity=21) == {"ip_velocity": (25, "21 intents from this IP in 600 s")}
    assert details(amount=40_001, merchant_history_avg=None) == {
        "amount_unusual_for_payer": (45, "amount over 10x this payer's average")
    }
    assert details(amount=20_001, merchant_history_avg=None) == {
        "amount_unusual_for_payer": (30, "amount over 5x this payer's average")
    }
    assert details(amount=120_001, payer_history_avg=None) == {
        "amount_unusual_for_merchant": (20, "amount over 20x this merchant's average")
    }
    assert details(recent_declines=3) == {"card_testing": (40, "3 declines on this card in 3600 s")}
    assert details(payer_history_count=0, amount=100_000, merchant_history_avg=None) == {
        "first_time_large_amount": (15, "first payment from this payer, at least 1000 USD")
    }


def test_payer_history_counts_from_three_payments():
    assert "amount_unusual_for_payer" in details(payer_history_count=3, amount=10**6)
    assert "amount_unusual_for_payer" not in details(payer_history_count=2, amount=10**6)


# --- webhooks ----------------------------------------------------------------


def test_url_refusals_say_why_exactly():
    def none(host):
        raise AssertionError("must not resolve")

    assert W.url_allowed("http://h.example:99999/", False, none) == (False, "malformed URL")
    assert W.url_allowed("ftp://h.example/", False, none) == (
        False,
        "scheme must be http or https",
    )
    assert W.url_allowed("https:///x", False, none) == (False, "URL has no host")
    for url in ("https://user@h.example/", "https://:pw@h.example/", "https://u:p@h.example/"):
        assert W.url_allowed(url, True, none) == (
            False,
            "credentials in the URL are not allowed",
        )


def test_an_unparseable_address_is_not_public():
    assert W.url_allowed("https://h.example/", False, lambda host: ["not-an-ip"]) == (
        False,
        "host h.example resolves to a non-public address",
    )
    assert W.url_allowed("https://h.example/", False, lambda host: ["93.184.216.34"]) == (
        True,
        "",
    )


def test_retry_schedule_includes_a_retry_exactly_at_the_max_age():
    assert W.retry_delays(59.0) == []
    assert W.retry_delays(60.0) == [60.0]
    assert W.retry_delays(180.0) == [60.0, 120.0]
    assert W.retry_delays(180.0, scale=0.5) == [30.0, 60.0]


def test_jitter_draws_from_the_given_rng_over_zero_to_the_nominal_wait():
    class Recorder:
        def uniform(self, low, high):
            self.bounds = (low, high)
            return high / 2

    rng = Recorder()
    assert W.next_delay(3, rng, scale=2.0) == 240.0
    assert rng.bounds == (0.0, 240.0)
    assert W.next_delay(1, random.Random(7)) == random.Random(7).uniform(0.0, 60.0)


def test_sign_without_secrets_says_why():
    with pytest.raises(ValueError) as exc:
        W.sign([], b"{}", 1)
    assert str(exc.value) == "at least one signing secret is required"


# --- hash chain ----------------------------------------------------------------


def test_seal_hash_is_sha256_over_the_previous_seal_and_compact_json():
    head = b'["seal","2026-01-02",1,9,5,"' + b"a" * 64 + b'"]'
    expected = hashlib.sha256(bytes(32) + head).hexdigest()
    assert hc.seal_hash(hc.GENESIS, date(2026, 1, 2), 1, 9, 5, "a" * 64) == expected
    empty = b'["seal","2026-01-03",null,null,0,"' + b"1" * 64 + b'"]'
    assert hc.seal_hash("1" * 64, date(2026, 1, 3), None, None, 0, "1" * 64) == (
        hashlib.sha256(bytes.fromhex("1" * 64) + empty).hexdigest()
    )


def test_canonical_time_is_utc_whatever_the_process_timezone(monkeypatch):
    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5)))
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        text = hc.canonical_text({**dict.fromkeys(hc.FIELDS), "created_at": when})
    finally:
        monkeypatch.undo()
        time.tzset()
    assert text[-1] == "2026-01-01T22:04:05.000006+00:00"
    assert when.astimezone(UTC).isoformat(timespec="microseconds") == text[-1]


# --- fees --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "fee plan must be an object"),
        ({"bps": {}, "percent": 1, "extra": 2}, "fee plan has unknown keys: extra, percent"),
        ({"bps": []}, "fee plan 'bps' must be an object"),
        ({"fixed": 3}, "fee plan 'fixed' must be an object"),
        ({"bps": {"urgent": 1}}, "fee plan 'bps' has unknown key 'urgent'"),
        ({"fixed": {"XYZ": 1}}, "fee plan 'fixed' has unknown key 'XYZ'"),
        ({"bps": {"instant": -1}}, "fee plan bps.instant must be an integer >= 0, got -1"),
        ({"fixed": {"USD": 1.5}}, "fee plan fixed.USD must be an integer >= 0, got 1.5"),
        ({"bps": {"economy": 10_001}}, "fee plan bps.economy must be at most 10000"),
    ],
)
def test_fee_plan_refusals_say_why(data, message):
    with pytest.raises(ValueError) as exc:
        plan_from_json(data)
    assert str(exc.value) == message


def test_fee_plan_sections_are_optional_and_bounds_inclusive():
    only_fixed = plan_from_json({"fixed": {"USD": 1}})
    assert only_fixed.fixed["USD"] == 1 and dict(only_fixed.bps) == dict(DEFAULT_FEE_PLAN.bps)
    only_bps = plan_from_json({"bps": {"instant": 10_000}})
    assert only_bps.bps["instant"] == 10_000
    assert dict(only_bps.fixed) == dict(DEFAULT_FEE_PLAN.fixed)
    # A fixed fee may be any size (the fee is capped at the amount anyway).
    assert plan_from_json({"fixed": {"ETH": 10**20}}).fixed["ETH"] == 10**20


def test_compute_fee_refusals_say_why():
    with pytest.raises(ValueError) as exc:
        compute_fee(-1, "USD", "standard", DEFAULT_FEE_PLAN)
    assert str(exc.value) == "amount must be an integer >= 0, got -1"
    with pytest.raises(ValueError) as exc:
        compute_fee(1, "USD", "urgent", DEFAULT_FEE_PLAN)
    assert str(exc.value) == "unknown priority 'urgent'"
