"""Load-or-create secret files, safe when many processes start at once.

gunicorn workers, Celery workers and the beat scheduler often boot together on
a fresh machine. Each may find the key file missing and generate a key; only one
of them may win, and every process must end up using the winner's bytes. So a
new key is written completely to a private temp file first and then published
with ``os.link``, which fails atomically if the name already exists: nobody
ever sees a half-written key, and losers simply read the winner's file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure_dir(directory: str | os.PathLike[str]) -> Path:
    """Create ``directory`` (and parents) with mode 0700 if it does not exist."""
    path = Path(directory)
    try:
        path.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        return path
    # mkdir's mode is filtered by the umask; set it explicitly.
    os.chmod(path, DIR_MODE)
    return path


def load_or_create(
    directory: str | os.PathLike[str], name: str, factory: Callable[[], bytes]
) -> bytes:
    """Return the bytes of ``directory/name``, creating it with ``factory()`` if missing."""
    target = ensure_dir(directory) / name
    existing = _read(target)
    if existing is not None:
        return existing
    data = factory()
    if not data:
        raise ValueError("key factory returned no data")
    _publish(target, data)
    # Whether we won or lost the race, the file on disk is the one truth.
    result = _read(target)
    if result is None:
        raise RuntimeError(f"key file {name} vanished right after creation")
    return result


def _read(target: Path) -> bytes | None:
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return None
    if data:
        return data
    # Only the O_EXCL fallback can expose an empty file, and only for the
    # instant between its create and its write: wait for the writer.
    for _ in range(100):
        time.sleep(0.01)
        data = target.read_bytes()
        if data:
            return data
    raise RuntimeError(f"key file {target.name} is empty")


def _publish(target: Path, data: bytes) -> None:
    # mkstemp creates the file 0600 in the same directory (same filesystem,
    # so the hard link below works and the key never touches another dir).
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            return  # another process won; the caller reads its file
        except OSError:
            # Filesystems without hard links: exclusive create instead.
            _publish_excl(target, data)
            return
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _publish_excl(target: Path, data: bytes) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    # Make the new directory entry durable, so a crash cannot lose a key that
    # has already been used to sign tokens or encrypt card numbers.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
