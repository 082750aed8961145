"""Operator accounts' pure rules: the roles, what an email address must look like."""

from __future__ import annotations

import re

# viewer reads, support acts on payments, admin manages merchants and operators.
ROLES = ("admin", "support", "viewer")
# Each role may do what the roles below it may.
_RANK = {"viewer": 0, "support": 1, "admin": 2}
# Deliberately plain: one @, no spaces, a dot in the domain. Whether the address
# receives mail is not this check's business.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def normalize_email(email: str) -> str | None:
    """The address as stored (trimmed, lower case), or None if it is not one."""
    address = email.strip().lower()
    return address if len(address) <= 254 and _EMAIL.fullmatch(address) else None


def role_allows(role: str | None, needed: str) -> bool:
    """True if an operator of ``role`` may do what ``needed`` may (admin > support > viewer)."""
    return role in _RANK and _RANK[role] >= _RANK[needed]
