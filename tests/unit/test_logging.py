"""JSON log lines: fields, context, exceptions, card numbers redacted."""

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
