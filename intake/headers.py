"""Response headers more than one resource sets."""

from __future__ import annotations


def no_store(resp) -> None:
    """A response that carries a secret (a token, a temporary password, a client or webhook
    secret) is never cached by the client or a proxy (RFC 6749 §5.1 for tokens)."""
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Pragma", "no-cache")
