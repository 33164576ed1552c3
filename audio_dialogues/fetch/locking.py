"""Per-clip locks that leave no file behind, and the sweep of what a killed run left.

A lock is ``flock`` on a file in the cache's work folder; the holder unlinks the file before it
releases the lock, so a cache never keeps one lock file per clip it ever fetched. That is safe because
a lock counts only while its file is still the one linked under the lock's name: whoever gets the
``flock`` then checks that the name still points at the very file it locked, and starts over if it
does not. A second process that opened the file just before the holder unlinked it thus ends up
holding a lock on an orphan, notices, and retries on a fresh file.

``flock`` is released by the kernel when its holder dies, SIGKILL included; such a run leaves the
file (nobody unlinked it), which the next holder of that clip's lock, or :func:`sweep`, removes.
``flock`` works between threads (each acquisition opens its own file description), between
processes, and on NFS (where Linux maps it to POSIX byte-range locks).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from pathlib import Path

LOCK_SUFFIX = ".lock"
#: Temporaries of one clip: ``<key>.<pid>.<random>.tmp`` (a key never holds a '.').
TMP_SUFFIX = ".tmp"
_POLL_S = 0.05


class ClipLock:
    """An exclusive lock on the name ``path``; the file exists only while the lock is held."""

    def __init__(self, path: str | Path) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None

    def acquire(self, *, blocking: bool, stop: threading.Event | None = None) -> bool:
        """Take the lock; ``False`` if another holder has it and ``blocking`` is false (or ``stop`` is set).

        Raises ``OSError`` when the lock file cannot be created (a read-only or full cache).
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if not blocking:
                    return False
                if stop is None:
                    time.sleep(_POLL_S)
                elif stop.wait(_POLL_S):
                    return False
                continue
            except BaseException:
                os.close(fd)
                raise
            try:
                linked = os.stat(self.path)
            except FileNotFoundError:
                linked = None
            held = os.fstat(fd)
            if linked is not None and (linked.st_dev, linked.st_ino) == (held.st_dev, held.st_ino):
                self._fd = fd
                return True
            os.close(fd)  # the previous holder unlinked it after we opened it: try a fresh file

    def release(self) -> None:
        """Unlink the file, then let go: nobody can take a lock on a name that is no longer there."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None


def lock_path(work_dir: str | Path, key: str) -> Path:
    return Path(work_dir) / f"{key}{LOCK_SUFFIX}"


def sweep(work_dir: str | Path) -> int:
    """Remove lock files and temporaries that killed runs left in ``work_dir``; returns how many.

    A clip's leftovers are removed only while holding its lock, so nothing a live run uses is touched.
    """
    try:
        names = os.listdir(work_dir)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    by_key: dict[str, list[str]] = {}
    for name in names:
        key = name.split(".", 1)[0]
        if key:
            by_key.setdefault(key, []).append(name)
    removed = 0
    for key, leftovers in by_key.items():
        lock = ClipLock(lock_path(work_dir, key))
        try:
            if not lock.acquire(blocking=False):
                continue
        except OSError:
            continue
        try:
            for name in leftovers:
                path = os.path.join(work_dir, name)
                if name.endswith(LOCK_SUFFIX):
                    removed += 1  # it is the one we hold: release() unlinks it
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
                else:
                    try:
                        os.unlink(path)
                        removed += 1
                    except FileNotFoundError:
                        pass
        finally:
            lock.release()
    return removed


def remove_temporaries(work_dir: str | Path, key: str) -> None:
    """Remove the temporaries of ``key`` (call holding its lock: any there are from a killed run)."""
    prefix = key + "."
    try:
        names = os.listdir(work_dir)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(TMP_SUFFIX):
            path = os.path.join(work_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
