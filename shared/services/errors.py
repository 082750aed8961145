"""Errors a use case raises; the API maps each to one problem+json response."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code = "invalid_request"
    title = "Invalid request"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class NotFound(ServiceError):
    status = 404
    code = "resource_missing"
    title = "No such object"

    def __init__(self, kind: str, object_id: str, param: str = "id"):
        super().__init__(f"No such {kind}: '{object_id}'", param)


class InvalidState(ServiceError):
    status = 400
    code = "payment_intent_unexpected_state"
    title = "Unexpected state"
