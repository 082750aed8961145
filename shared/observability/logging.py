"""JSON log lines (one object per line) for the API, the workers and beat."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from shared.observability import context

_ACCESS_RID = "{x-request-id}o"  # gunicorn's access-log atom for that response header
# A last line of defence: card numbers must never reach a log even if some
# exception message or third-party library echoes one: 13-19 digits, or
# groups of four split by spaces or dashes, standing alone (not inside a
# uuid or an id) and passing the Luhn check.
_PAN = re.compile(r"(?<![\w-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7})(?![\w-])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


REDACTED = "[REDACTED]"
# Personal and card data that may reach a message through an error's text:
# Postgres echoes a row or a key's values in its DETAIL line; a card-key
# ciphertext (<version>:<base64>, shared/security/vault.py) is the card
# number encrypted; the erasure route's path names the customer.
_ECHOES = (
    # The row may hold anything (newlines too): all of it, up to what SQLAlchemy appends.
    (
        re.compile(r"(Failing row contains ).*?(?=\n\[SQL|\n\(Background|\Z)", re.S),
        rf"\1{REDACTED}",
    ),
    (
        re.compile(r"(Key \([^)]*\)=).*?(?= already exists| is not present| is still ref|$)", re.M),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?<![\w/+=-])[A-Za-z0-9_-]{1,16}:[A-Za-z0-9+/]{48,}={0,2}(?![\w/+=])"), REDACTED),
    (re.compile(r"(/v1/customers/)[^/\s?\"']+"), rf"\1{REDACTED}"),
)


def redact(text: str) -> str:
    """Replace anything that looks like a card number, a card token or echoed personal data."""

    def sub(m: re.Match) -> str:
        digits = re.sub(r"[ -]", "", m.group())
        return REDACTED if _luhn(digits) else m.group()

    text = _PAN.sub(sub, text)
    for pattern, replacement in _ECHOES:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object with the ids of the current context."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = context.current()
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "process": record.process,
        }
        for field in context.FIELDS:
            # An explicit extra={"intent_id": ...} wins over the context.
            out[field] = getattr(record, field, None) or ctx.get(field)
        if isinstance(record.args, dict) and record.args.get(_ACCESS_RID) not in (None, "-"):
            # gunicorn's access line runs after the request context is gone.
            out["request_id"] = record.args[_ACCESS_RID]
        if record.exc_info:
            out["exc_info"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack_info"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str = "INFO", stream=None) -> None:
    """Send every logger through one JSON handler at ``level`` (root logger)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Python warnings would otherwise reach stderr as plain text.
    logging.captureWarnings(True)


def gunicorn_logconfig(level: str = "INFO", access: bool = False) -> dict:
    """A ``logconfig_dict`` for gunicorn: its own logs and the app's, as JSON on stderr."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "root": {"level": level.upper(), "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            # Access lines name the path and status, never bodies or headers.
            "gunicorn.access": {
                "level": "INFO" if access else "CRITICAL",
                "handlers": [],
                "propagate": True,
            },
        },
    }
