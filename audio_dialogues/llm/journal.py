"""The answer journal: every response, appended and flushed the moment it arrives, so none is paid twice.

``journal.jsonl`` in the output folder holds one JSON object per response, keyed by the hash of the
request (model, messages and sampling parameters). A re-run reads it first and never sends a request whose
key is there. A line with an ``error`` records a request that got no answer (a batch's error line): it is
kept in :attr:`Journal.errors`, not among the answers, so the request is asked again.

Each line goes to the kernel in one ``write`` on an ``O_APPEND`` descriptor, so a SIGKILL
can at worst leave a torn last line, which the next open cuts off; ``fsync`` runs at most every
``fsync_interval`` seconds (and on close), which bounds what a power cut, not a kill, can lose.

A write that fails (a full disk, a read-only or vanished folder) is cut back to the last whole line and
stops the journal: every later ``append`` raises the same :class:`~audio_dialogues.files.OutputError`, so
no line is ever written after a torn one and the answers journaled before stay readable.

A lock on the folder (``.<command>.lock``, e.g. ``.generate.lock``, released by the OS when its holder dies)
keeps two runs from writing the same journal.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import filelock

from ..errors import AudioDialoguesError
from ..files import OutputError, describe_os_error

JOURNAL_NAME = "journal.jsonl"


class JournalError(AudioDialoguesError, ValueError):
    """A journal that cannot be used (corrupt in the middle, or locked by another run)."""


#: The header naming what a request is for; servers ignore it, test servers use it to count repeats.
ITEM_HEADER = "X-Audio-Dialogues-Item"


def request_key(body: dict[str, Any], item: str = "") -> str:
    """The identity of a request: everything that shapes the answer (not the API key or the URL), and the item.

    The item is part of it because two clips with the same events render the same prompt and still
    deserve their own dialogues.
    """
    params = "\0".join(repr(body.get(k)) for k in ("model", "temperature", "top_p", "max_tokens", "seed"))
    digests = "".join(_message_digest(m.get("role", ""), _text(m.get("content", ""))) for m in body.get("messages", ()))
    return hashlib.sha256(f"{params}\0{item}\0{digests}".encode()).hexdigest()


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, sort_keys=True)


@functools.lru_cache(maxsize=1024)
def _message_digest(role: str, content: str) -> str:
    """One message's hash; the instruction and examples, shared by every request, are hashed once."""
    return hashlib.sha256(f"{role}\0{content}".encode()).hexdigest()


def lock_name(command: str) -> str:
    """The lock file a command's :class:`OutputLock` takes in its output folder, e.g. ``.generate.lock``."""
    return f".{command}.lock"


class OutputLock:
    """An exclusive, non-blocking lock on an output folder: a second run gets a clear refusal.

    ``command`` names the lock file (unless ``name`` does) and the refusal; ``option`` is the option that
    chooses the output.
    """

    def __init__(self, folder: Path, command: str = "generate", option: str = "--output-dir",
                 name: str | None = None) -> None:
        self.path = Path(folder) / (name or lock_name(command))
        self.command, self.option = command, option
        self._lock = filelock.FileLock(str(self.path), timeout=0)

    def __enter__(self) -> OutputLock:
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise JournalError(
                f"{self.path.parent}: another `audio-dialogues {self.command}` run is using this output folder "
                f"(lock {self.path}); wait for it to finish or choose another {self.option}"
            ) from None
        except OSError as e:
            raise OutputError(f"{describe_os_error(self.path, e)}: cannot lock the output folder, so nothing can be "
                              f"written there; choose another {self.option}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class Journal:
    """Append-only JSON Lines of responses, indexed by request key in memory.

    ``read_only`` reads what is there (a missing file is an empty journal) and never creates, cuts or
    appends to the file: what a dry run needs.
    """

    def __init__(self, path: Path, fsync_interval: float = 1.0, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.fsync_interval = fsync_interval
        self.entries: dict[str, dict] = {}
        #: Requests that got an error instead of an answer (a batch's error line, an expired batch): recorded, but
        #: not answers, so ``key in journal`` stays false and a later run asks them again.
        self.errors: dict[str, dict] = {}
        self.torn_bytes = 0
        self._failure: OutputError | None = None
        self._fd = -1
        self._size = self._load(cut_torn=not read_only)
        if not read_only:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"{describe_os_error(self.path, e)}: cannot open the journal for writing") from None
        self._last_sync = time.monotonic()

    def _load(self, cut_torn: bool) -> int:
        """Read the entries; returns the size of the whole lines (a torn last line is cut when ``cut_torn``)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as e:
            raise OutputError(f"{describe_os_error(self.path, e)}: cannot read the journal") from None
        good = 0
        for lineno, line in enumerate(_lines(data), start=1):
            raw, end, complete = line
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict) or "key" not in entry:
                    raise ValueError("not a journal entry")
            except (ValueError, UnicodeDecodeError, RecursionError) as e:
                if end == len(data):
                    break  # a torn last line from a kill mid-write: cut below
                raise JournalError(f"{self.path}:{lineno}: corrupt journal line ({e}); move the file "
                                   f"aside to start over, or delete that line") from None
            if not complete:
                break
            self._index(entry)
            good = end
        if good < len(data) and cut_torn:
            self.torn_bytes = len(data) - good
            try:
                with open(self.path, "r+b") as f:
                    f.truncate(good)
            except OSError as e:
                raise OutputError(f"{describe_os_error(self.path, e)}: cannot cut the torn last line of the "
                                  "journal") from None
        return good

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def append(self, entry: dict) -> None:
        """Write ``entry`` (which has a ``key``) in one system call; fsync when the interval has passed.

        On a failed write the file is cut back to its last whole line and :class:`OutputError` is raised
        (now and on every later call): a full disk stops the run with the journal intact.
        """
        if self._failure is not None:
            raise self._failure
        if self._fd < 0:
            raise OutputError(f"{self.path}: the journal was opened read-only or is closed")
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        written = 0
        try:
            while written < len(line):  # a short write (a nearly full disk) is finished or fails with ENOSPC
                written += os.write(self._fd, line[written:])
            now = time.monotonic()
            if now - self._last_sync >= self.fsync_interval:
                os.fsync(self._fd)
                self._last_sync = now
        except OSError as e:
            if written < len(line):
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
            self._failure = OutputError(
                f"{describe_os_error(self.path, e)}. The {len(self.entries):,} entries written before are kept; "
                "fix the cause and run the same command again to resume")
            raise self._failure from None
        self._size += written
        self._index(entry)

    def _index(self, entry: dict) -> None:
        (self.errors if entry.get("error") is not None else self.entries)[entry["key"]] = entry

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.fsync(fd)
            except OSError as e:
                if self._failure is None:
                    raise OutputError(f"{describe_os_error(self.path, e)}: the journal's last entries may not "
                                      "have reached the disk") from None
            finally:
                os.close(fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lines(data: bytes) -> Iterator[tuple[bytes, int, bool]]:
    """``(line, offset after it, ended with a newline)`` for each non-empty line of ``data``."""
    start = 0
    while start < len(data):
        newline = data.find(b"\n", start)
        end = len(data) if newline < 0 else newline + 1
        line = data[start:end]
        if line.strip():
            yield line, end, newline >= 0
        start = end
