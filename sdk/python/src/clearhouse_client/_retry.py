"""When to send a request again, and how long to wait first."""

from __future__ import annotations

import random
from dataclasses import dataclass

from clearhouse_client.errors import APIConnectionError, ClearhouseError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in count and in any one wait.

    The n-th retry waits a random time in [d/2, d] with d = min(initial_delay_s ·
    2^(n-1), max_delay_s): clients that failed together spread out. A
    ``Retry-After`` the API sends is a floor; one longer than ``max_retry_after_s``
    (a lockout's 900 s) is not waited for: the error is raised at once.
    """

    max_retries: int = 4
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0

    def should_retry(self, error: ClearhouseError, retries_so_far: int) -> bool:
        """Whether ``error`` is worth another attempt with the same idempotency key."""
        if retries_so_far >= self.max_retries:
            return False
        after = retry_after(error)
        if after is not None and after > self.max_retry_after_s:
            return False
        return retryable(error)

    def delay(self, error: ClearhouseError, retry_number: int, rng=random) -> float:
        """Seconds to wait before the ``retry_number``-th retry (1-based)."""
        nominal = min(self.initial_delay_s * 2 ** (retry_number - 1), self.max_delay_s)
        wait = nominal * (0.5 + rng.random() / 2)
        after = retry_after(error)
        return max(wait, after) if after is not None else wait


NO_RETRIES = RetryPolicy(max_retries=0)


def retryable(error: ClearhouseError) -> bool:
    """Connection errors, 409 ``idempotency_key_in_use``, 429 and 5xx: the answer may differ."""
    if isinstance(error, APIConnectionError):
        return True
    status = error.http_status or 0
    if status == 409:
        # Another request with this key is in flight; any other conflict is final.
        return error.code == "idempotency_key_in_use"
    return status == 429 or status >= 500


def retry_after(error: ClearhouseError) -> float | None:
    """The answer's ``Retry-After`` in seconds (the delta-seconds form the API sends)."""
    raw = error.headers.get("retry-after")
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None
