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


def redact(text: str) -> str:
    """Replace anything that looks like a card number."""

    def sub(m: re.Match) -> str:
        digits = re.sub(r"[ -]", "", m.group())
        return "[REDACTED]" if _luhn(digits) else m.group()

    return _PAN.sub(sub, text)


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
