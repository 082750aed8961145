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
import fcntl
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


class MissingKey(RuntimeError):
    """A key that must exist does not (production never generates one); says which setting."""


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
    directory: str | os.PathLike[str],
    name: str,
    factory: Callable[[], bytes],
    on_create: Callable[[Path], None] | None = None,
) -> bytes:
    """Return the bytes of ``directory/name``, creating it with ``factory()`` if missing.

    ``on_create(path)`` is called by the one process whose key was published.
    """
    target = ensure_dir(directory) / name
    existing = _read(target)
    if existing is not None:
        return existing
    data = factory()
    if not data:
        raise ValueError("key factory returned no data")
    if _publish(target, data) and on_create is not None:
        on_create(target)
    # Whether we won or lost the race, the file on disk is the one truth.
    result = _read(target)
    if result is None:
        raise RuntimeError(f"key file {name} vanished right after creation")
    return result


def read(directory: str | os.PathLike[str], name: str) -> bytes | None:
    """The bytes of ``directory/name``, or None when it does not exist."""
    return _read(Path(directory) / name)


def replace(directory: str | os.PathLike[str], name: str, data: bytes) -> None:
    """Write ``directory/name`` anew, atomically: readers see the old file or the new one."""
    target = ensure_dir(directory) / name
    with _written_beside(target, data) as tmp:
        # A rename gives the file a new inode: watchers see the change even
        # when size and mtime happen to match the old one's.
        os.replace(tmp, target)
        _fsync_dir(target.parent)


def generated_warning(log, what: str):
    """An ``on_create`` callback: one WARNING line saying ``what`` was generated, and where."""

    def warn(path) -> None:
        log.warning(
            "keys: generated %s in %s (development only: with CLEARHOUSE_ENV=production"
            " a missing key stops the process)",
            what,
            path,
        )

    return warn


@contextlib.contextmanager
def _written_beside(target: Path, data: bytes):
    """A durable temp file holding ``data`` beside ``target``; removed on exit if still there."""
    # mkstemp creates the file 0600 in the same directory (same filesystem,
    # so links and renames work and the key never touches another dir).
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def locked(directory: str | os.PathLike[str]):
    """Hold the key folder's lock: rotations never interleave their read and write."""
    path = ensure_dir(directory) / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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


def _publish(target: Path, data: bytes) -> bool:
    """Publish ``data`` as ``target`` unless it exists; True if ours is the one published."""
    with _written_beside(target, data) as tmp:
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False  # another process won; the caller reads its file
        except OSError:
            # Filesystems without hard links: exclusive create instead.
            return _publish_excl(target, data)
        _fsync_dir(target.parent)
        return True


def _publish_excl(target: Path, data: bytes) -> bool:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(target.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    # Make the new directory entry durable, so a crash cannot lose a key that
    # has already been used to sign tokens or encrypt card numbers.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
