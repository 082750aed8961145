"""Object ids: a type prefix and 96 random bits (``pi_…``, ``evt_…``)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A new random id with this prefix, as ``<prefix>_<24 hex digits>``."""
    return f"{prefix}_{secrets.token_hex(12)}"
