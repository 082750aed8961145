"""GCRA (the generic cell rate algorithm) for rate limits: the arithmetic, no store.

A limit lets ``rate`` requests per second through with a burst of ``burst``.
Each key keeps one number, its theoretical arrival time (TAT): when the bucket
would be full again. A request at ``now`` is allowed when, counting it, the TAT
is no more than ``burst`` emission intervals ahead of ``now``; then the TAT
moves one interval on. Times are integer microseconds (the store's clock).

A request checked against several keys at once (its client's and its IP's)
passes only if every key allows it, and only then do their TATs move: a refused
request costs no key anything. The Redis script (shared/security/throttle.py)
does the same as ``decide``; ``verdicts`` turns what it read into headers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

US = 1_000_000


@dataclass(frozen=True)
class Limit:
    """``rate`` requests per second, ``burst`` at once."""

    rate: float
    burst: int

    @classmethod
    def of(cls, rate: float, burst_s: float) -> Limit | None:
        """A limit whose bucket holds ``burst_s`` seconds of its rate; None when rate <= 0."""
        if rate <= 0:
            return None
        return cls(rate, max(1, math.ceil(rate * burst_s)))

    @property
    def interval_us(self) -> int:
        return max(1, round(US / self.rate))

    @property
    def tolerance_us(self) -> int:
        return self.interval_us * self.burst


@dataclass(frozen=True)
class Verdict:
    """One key's answer: allowed or not, and what the RateLimit headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # until the bucket is full again
    retry_after_s: int | None = None  # refused: when a request would pass

    def headers(self) -> dict[str, str]:
        """The IETF draft's RateLimit-Limit, -Remaining and -Reset (and Retry-After)."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if self.retry_after_s is not None:
            out["Retry-After"] = str(self.retry_after_s)
        return out


def _seconds_up(us: int) -> int:
    return max(0, -(-us // US))


def allows(limit: Limit, now: int, tat: int) -> bool:
    """Whether a request at ``now`` passes a key whose TAT (at least ``now``) is ``tat``."""
    return tat + limit.interval_us - now <= limit.tolerance_us


def decide(limits: list[Limit], now: int, stored: list[int | None]) -> tuple[bool, list[int]]:
    """(allowed, the TATs to store) for one request; the script's reference."""
    tats = [now if t is None else max(t, now) for t in stored]
    allowed = all(allows(lim, now, tat) for lim, tat in zip(limits, tats, strict=True))
    if allowed:
        tats = [tat + lim.interval_us for lim, tat in zip(limits, tats, strict=True)]
    return allowed, tats


def verdicts(limits: list[Limit], now: int, tats: list[int], allowed: bool) -> list[Verdict]:
    """Each key's verdict from the TATs before the request (max(stored, now)) and the decision."""
    out = []
    for lim, tat in zip(limits, tats, strict=True):
        if allowed:
            after = tat + lim.interval_us
            left = (lim.tolerance_us - (after - now)) // lim.interval_us
            out.append(Verdict(True, lim.burst, max(0, left), _seconds_up(after - now)))
        elif allows(lim, now, tat):
            # Refused by another key: this one was not charged.
            left = (lim.tolerance_us - (tat - now)) // lim.interval_us
            out.append(Verdict(False, lim.burst, max(0, left), _seconds_up(tat - now)))
        else:
            wait = tat + lim.interval_us - lim.tolerance_us - now
            out.append(
                Verdict(False, lim.burst, 0, _seconds_up(tat - now), max(1, _seconds_up(wait)))
            )
    return out


def tighter(found: list[Verdict]) -> Verdict:
    """The verdict to report: a refusal (the longest wait), else the fewest remaining."""
    refused = [v for v in found if v.retry_after_s is not None]
    if refused:
        return max(refused, key=lambda v: v.retry_after_s)
    return min(found, key=lambda v: (v.remaining, -v.reset_s))
