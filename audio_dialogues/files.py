"""Reading and writing the package's text files: whole-or-nothing writes and JSON Lines reading.

Every output the package writes (reports, exports, cache records, merged journals, generated data)
goes through :func:`atomic_write`, so a kill, a full disk or a bad path never leaves a half-written
file under its final name. Every JSON Lines input goes through :func:`iter_jsonl`, so a byte-order
mark, a non-UTF-8 line or a malformed record is reported the same way everywhere: file and line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: How a writer names its temporary files: ``.tmp-<stem>-<pid>-<random>`` next to the final file.
TMP_PREFIX = ".tmp-"


class OutputError(OSError):
    """An output file cannot be written (bad path, no permission, full disk); the message says which."""


def describe_os_error(path: str | os.PathLike, err: OSError) -> str:
    """``path: what went wrong`` in words a user acts on (a full disk is named as such)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "the disk is full (no space left on the device)"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "permission denied (read-only or not yours)"
    elif err.errno == errno.ENOTDIR:
        what = "a parent of this path is a file, not a folder"
    elif err.errno == errno.EISDIR:
        what = "this path is a folder, not a file"
    else:
        what = err.strerror or str(err)
    return f"{path}: {what}"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, binary: bool = False) -> Iterator[IO[Any]]:
    """Write ``path`` whole or not at all: into a temporary file beside it, renamed into place on success.

    Parent folders are created. Any :class:`OSError` (including one raised while writing) becomes an
    :class:`OutputError` naming the path; the temporary file is removed whatever happens.
    """
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.stem}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8", newline="")
    except OSError as err:
        raise OutputError(describe_os_error(path, err)) from None
    try:
        with f:
            yield f
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(describe_os_error(path, err)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def iter_jsonl(path: str | os.PathLike, error: type[Exception] = ValueError) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` for each non-blank line of a JSON Lines file, read line by line.

    ``where`` is ``path:line``. A byte-order mark on the first line is accepted; a line that is not
    UTF-8 or not JSON raises ``error`` naming the line (with a hint when the file is a JSON array or
    pretty-printed JSON rather than JSON Lines).
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as err:
        raise error(describe_os_error(path, err)) from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise error(f"{where}: not UTF-8 text (byte {err.start + 1} of the line); save the file as UTF-8"
                            ) from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except RecursionError:
                raise error(f"{where}: JSON nested too deeply") from None
            except json.JSONDecodeError as err:
                head = line.lstrip()[:1]
                hint = ""
                if head == "[":
                    hint = " (this looks like a JSON array: write one JSON object per line, or name the file .json)"
                elif lineno == 1 and head == "{":
                    hint = " (a pretty-printed JSON object? write one object per line)"
                raise error(f"{where}: malformed JSON Lines record: {err.msg}{hint}") from None
            yield where, value
