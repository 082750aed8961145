"""The pipeline's backlog as each API process samples it, and the refusal past its bound.

The backlog is the number of ``processing`` intents: accepted and not yet
through limits, fraud, fees and authorization. Postgres knows it whatever the
broker (an intent lost on the way, or still in the outbox, counts as well),
and the partial index ``ix_intents_processing`` makes it an index-only count,
stopped at ``count_cap`` rows. Each API process reads it at most every
``interval_s``, as the revocation list is reread: the request that finds the
sample stale reads it, any other request meanwhile goes on with the last one,
so creates never queue behind the count. A failed read keeps the last sample
(a Postgres outage is logged once, as for every other read).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import text

from shared.db import faults
from shared.db.engine import outage
from shared.db.uow import UnitOfWork
from shared.domain.admission import count_cap
from shared.services.errors import ServiceError

log = logging.getLogger(__name__)

# Between 0.25 and 0.5 s: a burst is seen within half a second, and three API
# processes cost Postgres six short counts a second.
SAMPLE_S = 0.5


class Overloaded(ServiceError):
    """The pipeline is behind: no new intent until its backlog is under the bound (503)."""

    code = "overloaded"
    why = "The payment pipeline is behind"

    def __init__(self, retry_after_s: int, why: str | None = None):
        super().__init__(
            f"{why or self.why}, so no intent was created. Retry after {retry_after_s} s"
            " with the same Idempotency-Key.",
            None,
        )
        self.retry_after_s = retry_after_s


class Saturated(Overloaded):
    """The API itself is saturated: the create waited too long for a thread (503)."""

    def __init__(self, retry_after_s: int, waited_ms: float):
        super().__init__(
            retry_after_s,
            f"The API is saturated (this request waited {waited_ms:.0f} ms for a thread)",
        )


def backlog(uow: UnitOfWork, cap: int) -> int:
    """Intents still ``processing``, counted up to ``cap`` (an index-only scan)."""
    return uow.conn.execute(
        text(
            "SELECT count(*) FROM (SELECT 1 FROM payment_intents"
            " WHERE status = 'processing' LIMIT :cap) AS waiting"
        ),
        {"cap": cap},
    ).scalar_one()


def from_database(
    new_uow: Callable[[], UnitOfWork], bound: int, interval_s: float = SAMPLE_S
) -> BacklogSample:
    """The backlog in Postgres, counted as far as ``bound`` needs, sampled every ``interval_s``."""
    cap = count_cap(bound)

    def read() -> int:
        with new_uow() as uow:
            return backlog(uow, cap)

    return BacklogSample(read, interval_s)


class BacklogSample:
    def __init__(
        self,
        read: Callable[[], int],
        interval_s: float = SAMPLE_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._read = read
        self._interval = interval_s
        self._clock = clock
        self._value = 0  # until the first read: nothing known to be waiting
        self._due = 0.0  # clock time of the next read; 0: at first use
        self._lock = threading.Lock()

    def value(self) -> int:
        """The backlog as of at most ``interval_s`` ago (plus one read)."""
        if self._clock() >= self._due:
            self._refresh()
        return self._value

    def _refresh(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another request is reading: go on with the last sample
        try:
            if self._clock() < self._due:
                return  # read while this one took the lock
            self._value = self._read()
        except Exception as exc:
            if faults.is_transient(exc):
                outage.failed(exc)
            else:
                log.exception("could not count the pipeline's backlog; keeping the last count")
        finally:
            self._due = self._clock() + self._interval
            self._lock.release()
