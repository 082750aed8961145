"""The API's list of revoked clients: read from Postgres about once a second, never per request.

An access token is a signed JWT the API checks without the database, so a
revoked client's tokens would stay good until they expire (up to 15 min).
Each API process therefore keeps the set of clients revoked recently enough
to still hold a live token (within the longest access-token lifetime, plus a
margin), and rereads it when it is older than ``interval_s``: the request
that finds it stale rereads it, while any other request running meanwhile
uses the last one (no queueing behind the read). Revocation reaches every
process within ``interval_s`` plus one read, well inside the 5 s promised.
If Postgres is away the last good list stays in force (one log line per
outage) and the read is tried again ``interval_s`` later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared.db import faults
from shared.db.engine import outage
from shared.db.uow import UnitOfWork
from shared.security.tokens import MAX_ACCESS_TTL_S
from shared.services import clients

log = logging.getLogger(__name__)

REFRESH_S = 1.0
# Tokens signed just before the revocation committed, and clock skew between hosts.
MARGIN_S = 60


def from_database(new_uow: Callable[[], UnitOfWork], interval_s: float = REFRESH_S):
    """The list of the clients revoked in Postgres, reread every ``interval_s``."""

    def read() -> frozenset[str]:
        with new_uow() as uow:
            return clients.recently_revoked(uow, MAX_ACCESS_TTL_S + MARGIN_S)

    return RevocationList(read, interval_s)


class RevocationList:
    def __init__(
        self,
        read: Callable[[], frozenset[str]],
        interval_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
        what: str = "the revoked API clients",
    ):
        self._read = read
        self._interval = interval_s
        self._clock = clock
        self._revoked: frozenset[str] = frozenset()
        self._due = 0.0  # clock time of the next read; 0: read at first use
        self._loaded = False
        self._lock = threading.Lock()
        self._what = what  # for the log line of a failed read

    def is_revoked(self, client_id: str | None) -> bool:
        """True if ``client_id`` was revoked (as of at most ``interval_s`` ago)."""
        if self._clock() >= self._due:
            self._refresh()
        return client_id in self._revoked

    def _refresh(self) -> None:
        # Until a first list is in, every request waits for it; after that a
        # request that finds another one reading goes on with the last list.
        if not self._lock.acquire(blocking=not self._loaded):
            return
        try:
            if self._clock() < self._due:
                return  # another thread read it while this one waited
            self._revoked = self._read()
            self._loaded = True
        except Exception as exc:
            if faults.is_transient(exc):
                outage.failed(exc)
            else:
                log.exception("could not read %s; keeping the last list", self._what)
        finally:
            self._due = self._clock() + self._interval
            self._lock.release()
