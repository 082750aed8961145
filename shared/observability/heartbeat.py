"""A liveness file for processes without an HTTP port (the relay, beat).

The process touches ``Settings.heartbeat_file`` (env ``HEARTBEAT_FILE``) every
loop; a supervisor's healthcheck runs ``python -m shared.observability.heartbeat
check FILE MAX_AGE_S``, which exits 0 only while the file is younger than
MAX_AGE_S. A process stuck in a loop that no longer turns goes unhealthy and is
restarted.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

from shared.config import Settings


class Heartbeat:
    def __init__(self, path: str | None, every_s: float = 1.0):
        self._path = Path(path) if path else None
        self._every = every_s
        self._last = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Heartbeat:
        """The heartbeat of ``settings.heartbeat_file`` (none when it is unset)."""
        return cls(settings.heartbeat_file)

    def beat(self) -> None:
        """Touch the file (at most once per ``every_s``); never raises."""
        now = time.monotonic()
        if self._path is None or now - self._last < self._every:
            return
        self._last = now
        # A full or read-only disk must not stop payments.
        with contextlib.suppress(OSError):
            self._path.touch()

    def keep_alive(self) -> threading.Event:
        """Beat from a thread until the returned event is set.

        For a wait that is healthy however long it lasts: a standby beat
        blocked on the scheduler lock must not be restarted for it.
        """
        stop = threading.Event()

        def run():
            while not stop.is_set():
                self._last = 0.0
                self.beat()
                stop.wait(self._every)

        if self._path is not None:
            threading.Thread(target=run, name="heartbeat", daemon=True).start()
        return stop


def age_s(path: str) -> float:
    return time.time() - Path(path).stat().st_mtime


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "check":
        print("usage: heartbeat check FILE MAX_AGE_S", file=sys.stderr)
        return 2
    try:
        age = age_s(argv[1])
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if age > float(argv[2]):
        print(f"unhealthy: last heartbeat {age:.0f} s ago", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
