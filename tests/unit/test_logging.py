"""JSON log lines: fields, context, exceptions, card numbers and personal data redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared.observability import context
from shared.observability import logging as jsonlog


@pytest.fixture
def capture():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(jsonlog.JsonFormatter())
    logger = logging.getLogger(f"test.json.{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    context.clear()
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    context.clear()


def test_one_object_per_line_with_every_field(capture):
    logger, lines = capture
    logger.info("hello %s", "world")
    (line,) = lines()
    assert line["message"] == "hello world"
    assert line["level"] == "INFO" and line["logger"] == logger.name
    assert line["ts"].endswith("+00:00")
    for field in ("request_id", "merchant_id", "intent_id", "task_id"):
        assert field in line and line[field] is None


def test_context_fields_and_explicit_extra(capture):
    logger, lines = capture
    context.bind(request_id="req_1", merchant_id="mch_1")
    logger.warning("in a request")
    logger.warning("about one intent", extra={"intent_id": "pi_1"})
    context.clear()
    logger.warning("outside")
    first, second, third = lines()
    assert (first["request_id"], first["merchant_id"]) == ("req_1", "mch_1")
    assert second["intent_id"] == "pi_1" and second["request_id"] == "req_1"
    assert third["request_id"] is None


def test_exception_text_is_one_line_of_json(capture):
    logger, lines = capture
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("failed")
    (line,) = lines()
    assert "ValueError: boom" in line["exc_info"] and "Traceback" in line["exc_info"]


@pytest.mark.parametrize(
    "text", ["4242424242424242", "card 4000 0000 0000 0002 declined", "x=4000-0000-0000-9995;"]
)
def test_card_numbers_are_redacted(capture, text):
    logger, lines = capture
    logger.error(text)
    try:
        raise RuntimeError(text)
    except RuntimeError:
        logger.exception("oops")
    for line in lines():
        assert "[REDACTED]" in json.dumps(line)
        assert not any(pan in json.dumps(line) for pan in ("4242424242424242", "0000 0002"))


def test_other_numbers_stay(capture):
    logger, lines = capture
    logger.info("amount 1000000000000000001 id 1234567890123 ts 20261122")
    # 1234567890123 fails the Luhn check; amounts longer than 19 digits never match.
    assert lines()[0]["message"] == "amount 1000000000000000001 id 1234567890123 ts 20261122"


def test_gunicorn_access_line_takes_the_response_request_id(capture):
    logger, lines = capture
    logger.info("%(h)s %({x-request-id}o)s", {"h": "127.0.0.1", "{x-request-id}o": "req_9"})
    assert lines()[0]["request_id"] == "req_9"


def test_gunicorn_logconfig_is_valid():
    import logging.config

    config = jsonlog.gunicorn_logconfig("warning", access=False)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(config)
        assert isinstance(root.handlers[0].formatter, jsonlog.JsonFormatter)
        assert logging.getLogger("gunicorn.access").level == logging.CRITICAL
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_uuids_and_ids_are_not_mistaken_for_cards(capture):
    logger, lines = capture
    text = "Task x[bfaba36f-dd76-4a28-9150-3874001317cd] pi_4242424242424242abc"
    logger.info(text)
    assert lines()[0]["message"] == text


def test_a_postgres_detail_never_echoes_the_row_or_the_key(capture):
    logger, lines = capture
    logger.error(
        "(psycopg2.errors.CheckViolation) new row violates check constraint\n"
        "DETAIL:  Failing row contains (pi_1, cus_ada (vip)\nsecond line, 10.0.0.7).\n"
        "\n[SQL: INSERT INTO payment_intents ...]"
    )
    logger.error("DETAIL:  Key (merchant_id, customer)=(mch_1, cus_ada) already exists.")
    first, second = (line["message"] for line in lines())
    assert "cus_ada" not in first + second and "10.0.0.7" not in first
    assert "second line" not in first and "[SQL: INSERT" in first
    assert "Key (merchant_id, customer)=[REDACTED] already exists." in second


def test_card_tokens_and_the_erasure_path_are_redacted(capture):
    logger, lines = capture
    token = "v1:" + "Qk9P" * 16
    logger.error("could not decrypt %s", token)
    logger.error("unhandled error on POST /v1/customers/cus_ada/erase (request_id=req_1)")
    first, second = (line["message"] for line in lines())
    assert token not in first and "[REDACTED]" in first
    assert second == "unhandled error on POST /v1/customers/[REDACTED]/erase (request_id=req_1)"


def test_urls_ids_and_short_pairs_are_not_mistaken_for_tokens(capture):
    logger, lines = capture
    text = "redis://127.0.0.1:6379/8 key v1:abc evt_0a1b2c3d4e5f6a7b8c9d0e1f /v1/customers"
    logger.info(text)
    assert lines()[0]["message"] == text


def test_the_access_log_names_no_client_address_nor_query():
    from pathlib import Path

    conf = (Path(__file__).resolve().parents[2] / "deploy/gunicorn.conf.py").read_text()
    (line,) = [x for x in conf.splitlines() if x.startswith("access_log_format")]
    assert "%(h)s" not in line and "%(r)s" not in line and "%(q)s" not in line
    assert "%(U)s" in line
