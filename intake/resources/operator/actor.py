"""The audit trail's ``Actor`` for an operator request: who, which request, from where."""

from __future__ import annotations

from shared.services.audit import Actor


def actor_of(req) -> Actor:
    """``operator:<email>`` with the request's id and source IP (set by the Auth middleware)."""
    who = req.context.operator
    return Actor(f"operator:{who.email}", req.context.request_id, req.remote_addr)
