"""The operator password policy: long enough, not the email, not a common password.

Pure: the common-password list is a file shipped inside the package (read
once, never from the environment). Checks compare case-insensitively, so
``Password1234`` is refused as ``password1234`` is.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

MIN_LENGTH = 12
LIST_FILE = "common_passwords.txt"


class WeakPassword(ValueError):
    """The password breaks the policy; the message says which rule (never the password)."""


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list, lower case; ``#`` lines are comments."""
    text = resources.files(__package__).joinpath(LIST_FILE).read_text(encoding="utf-8")
    lines = (line.strip().lower() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def check(password: str, email: str) -> None:
    """Raise WeakPassword if ``password`` may not be an operator's password for ``email``."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_LENGTH} characters")
    folded, address = password.casefold(), email.strip().casefold()
    if folded in {address, address.partition("@")[0]}:
        raise WeakPassword("password must not be the email address")
    if folded in common_passwords():
        raise WeakPassword("password is too common")
