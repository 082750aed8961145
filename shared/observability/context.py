"""Log context (request, merchant, intent, task ids) carried in a contextvar."""

from __future__ import annotations

from contextvars import ContextVar

FIELDS = ("request_id", "merchant_id", "intent_id", "task_id")

# One immutable dict per context: binding copies it, so a value set in one
# request or task can never leak into another thread's or task's logs.
_current: ContextVar[dict[str, str] | None] = ContextVar("clearhouse_log_context", default=None)


def bind(**values: str | None) -> None:
    """Add fields to the current context (None removes a field)."""
    merged = {**current(), **values}
    _current.set({k: v for k, v in merged.items() if v is not None})


def clear() -> None:
    """Forget every field (at the start and end of each request and task)."""
    _current.set({})


def get(name: str) -> str | None:
    return current().get(name)


def current() -> dict[str, str]:
    return _current.get() or {}
