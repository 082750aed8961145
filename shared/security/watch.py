"""Key material that follows its files: re-read when they change, checked every few seconds.

A rotation (``clearhouse keys rotate-*``) replaces a key file while the API
and the workers run. Each process holds a ``Watched`` value and, at most every
``interval_s``, compares the files' (inode, size, mtime) with what it loaded:
one ``stat`` per file, no read, when nothing changed. ``refresh()`` checks at
once (a token under an unknown kid, a ciphertext under an unknown version).
A file that no longer parses is logged and the keys loaded before are kept:
a bad edit must not take a running API down.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(paths: Sequence[Path]) -> Stamp:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class Fixed(Generic[T]):
    """A value that never changes (keys given in the environment)."""

    def __init__(self, value: T) -> None:
        self._value = value

    def current(self) -> T:
        return self._value

    def refresh(self) -> bool:
        return False


class Watched(Generic[T]):
    """``load()``'s value, loaded again when one of ``paths`` changes."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        load: Callable[[], T],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._paths = [Path(p) for p in paths]
        self._load, self._interval, self._clock = load, interval_s, clock
        self._lock = threading.Lock()
        # Stamp before loading: a change between the two is seen next time.
        self._seen = _stamp(self._paths)
        self._value = load()
        self._checked = clock()

    def current(self) -> T:
        """The value, re-loaded first if the check is due and a file changed."""
        if self._clock() - self._checked >= self._interval:
            self.refresh()
        return self._value

    def refresh(self) -> bool:
        """Check the files now; True if they changed and the new value was loaded."""
        with self._lock:
            self._checked = self._clock()
            stamp = _stamp(self._paths)
            if stamp == self._seen:
                return False
            try:
                value = self._load()
            except Exception as exc:
                # Its messages name files and settings, never key material.
                log.error(
                    "keys: %s changed but cannot be loaded (%s); keeping the keys in use",
                    ", ".join(p.name for p in self._paths),
                    exc,
                )
                self._seen = stamp
                return False
            self._seen, self._value = stamp, value
            log.info("keys: reloaded %s", ", ".join(p.name for p in self._paths))
            return True
