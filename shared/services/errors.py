"""Errors a use case raises: a machine ``code``, a human ``message``, the ``param`` at fault.

They say what went wrong, not how to answer it: the intake maps each class to
its HTTP status in one table (``intake/errors.py``).
"""

from __future__ import annotations


class ServiceError(Exception):
    """The request cannot be carried out as asked."""

    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class NotFound(ServiceError):
    """No such object (or not this merchant's)."""

    code = "resource_missing"

    def __init__(self, kind: str, object_id: str, param: str = "id"):
        super().__init__(f"No such {kind}: '{object_id}'", param)


class InvalidState(ServiceError):
    """The object's state does not allow this (say, capturing a failed intent)."""

    code = "payment_intent_unexpected_state"
