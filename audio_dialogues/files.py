"""Reading and writing the package's text files: whole-or-nothing writes and JSON Lines reading.

Every output file the package writes whole (reports, exports, cache records, merged journals, generated
data, a repo folder's card and figures) goes through :func:`atomic_write`, so a kill, a full disk or a bad
path never leaves a half-written file under its final name. Three kinds are written otherwise, to the
same end: parquet shards of a repo folder stream into a hidden ``.partial`` file renamed when complete;
cut audio clips are written to a temporary in the cache's work folder and renamed; journals are appended
one whole line per write (a line torn by a kill is skipped or cut off by the next run).

Every text input goes through :func:`iter_lines` (JSON Lines through :func:`iter_jsonl`, CSV/TSV through
:func:`csv_rows`, whole JSON documents through :func:`load_json`), so a byte-order mark, a non-UTF-8 line
or a malformed record is reported the same way everywhere: file and line. Every input file, text or
audio, is opened through :func:`open_regular`: a FIFO, a socket, a device or a symbolic link to one is
refused by name, never opened blocking, never read without bound.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import os
import re
import shutil
import stat
import sys
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple

from .errors import AudioDialoguesError

#: How a writer names its temporary files: ``.tmp-<stem>-<pid>-<random>`` next to the final file.
TMP_PREFIX = ".tmp-"


class OutputError(AudioDialoguesError, OSError):
    """An output file cannot be written (bad path, no permission, full disk); the message says which."""


class FileIdentity(NamedTuple):
    """What says a file is still the one a cache entry was made from, without reading it: one ``stat``.

    Size and modification time catch a file rewritten in place; the change time (which no one can set
    back by hand, as ``touch -d`` does the modification time) and the inode catch another file moved to
    the same name, or a rewrite that kept size and mtime. The one definition every cache keyed on input
    files uses: the builder's content digests, the clip lists, the prepared copies' fingerprint and the
    record of a window cut from a longer file.
    """

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> FileIdentity:
        """The identity of the file at ``path`` now; ``OSError`` if it cannot be stat'ed."""
        return cls.of_stat(os.stat(path))

    @classmethod
    def of_stat(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


#: Errors of reading or writing that are the place's fault, not the data's, in words a user acts on.
FAULTS = {
    errno.ENOSPC: "the disk is full (no space left on device)",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "a file size limit was hit (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (not writable or not readable by you)",
    errno.EPERM: "permission denied (operation not permitted)",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EISDIR: "this path is a folder, not a file",
    errno.EIO: "an I/O error (failing disk?)",
}


def describe_os_error(path: str | os.PathLike, err: OSError) -> str:
    """``path: what went wrong``, with the causes a user can fix (a full disk, a read-only one) named as such."""
    if err.errno == errno.EEXIST and (err.filename != os.fspath(path) or not os.path.isdir(path)):
        what = FAULTS[errno.ENOTDIR]  # making a parent folder where a file stands
    else:
        what = FAULTS.get(err.errno or 0) or err.strerror or str(err)
    return f"{path}: {what}"


#: What a path is when it is no regular file, by the test of its mode (symbolic links followed).
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def special_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is when it is not a regular file (``a FIFO (named pipe)`` ...), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def _not_regular(path: str | os.PathLike, kind: str) -> str:
    link = f" (a symbolic link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    return f"is {kind}{link}, not a regular file"


def input_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be an input file, as a predicate (``does not exist``, ``is a FIFO (named pipe), not a
    regular file`` ...); None for a regular file. Other failures of ``stat`` (no permission) are raised.

    Tells a FIFO or a link to ``/dev/zero`` from a missing file: ``Path.is_file`` says False for both.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "does not exist"
    kind = special_kind(st.st_mode)
    return None if kind is None else _not_regular(path, kind)


def open_regular(path: str | os.PathLike, error: type[Exception] = ValueError) -> int:
    """A descriptor of ``path`` opened for reading, which is a regular file; else ``error`` naming the path.

    The package's one way into an input file. It is opened non-blocking (a FIFO without a writer would block
    ``open`` forever) and refused unless its descriptor is a regular file (a FIFO, a socket, a device, a
    symbolic link to ``/dev/zero``), so every read of it ends at its size.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ENXIO and (problem := input_problem(path)):  # a socket cannot be opened
            raise error(f"{os.fspath(path)}: {problem}") from None
        raise error(describe_os_error(path, err)) from None
    kind = special_kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise error(f"{os.fspath(path)}: {_not_regular(path, kind)}")
    os.set_blocking(fd, True)
    return fd


def open_input(path: str | os.PathLike, error: type[Exception] = ValueError) -> BinaryIO:
    """:func:`open_regular` as a binary file object."""
    return os.fdopen(open_regular(path, error), "rb")


def read_input(path: str | os.PathLike, error: type[Exception] = ValueError) -> bytes:
    """The whole content of a regular file (see :func:`open_regular`)."""
    with open_input(path, error) as f:
        try:
            return f.read()
        except OSError as err:
            raise error(describe_os_error(path, err)) from None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, binary: bool = False) -> Iterator[IO[Any]]:
    """Write ``path`` whole or not at all: into a temporary file beside it, renamed into place on success.

    Parent folders are created. Any :class:`OSError` (including one raised while writing), and a path
    that cannot name a file (empty, a NUL character), becomes an :class:`OutputError` naming the path;
    the temporary file is removed whatever happens.
    """
    if not Path(path).name or "\0" in os.fspath(path):
        raise OutputError(f"{os.fspath(path)!r}: not a usable file name")
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


#: The file that marks a folder as a command's output and lists what it wrote there (what may be removed).
OUTPUT_MANIFEST = ".audio-dialogues-output.json"


def _files_under(folder: Path) -> list[str]:
    """Every file (symlinks and special files included) under ``folder``, as relative POSIX paths."""
    out = []
    for parent, dirs, names in os.walk(folder):
        base = Path(parent).relative_to(folder)
        out += [(base / name).as_posix() for name in names]
        out += [(base / d).as_posix() for d in dirs if os.path.islink(Path(parent) / d)]
    return sorted(out)


def _manifest(folder: Path) -> dict:
    try:
        value = json.loads((folder / OUTPUT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def check_output_folder(path: str | os.PathLike, command: str, *, previous: Collection[str] = ()) -> None:
    """Refuse ``path`` as ``command``'s output folder unless it is missing, empty, or ``command``'s own output.

    A folder is ``command``'s output when its :data:`OUTPUT_MANIFEST` names ``command`` and, for a folder
    written whole (whose manifest lists its files), every file in it is listed; or, for folders written
    before manifests existed, when it holds one of the ``previous`` names. Anything else (a user's project,
    another command's output) is refused before anything is touched, naming a few of its entries.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise OutputError(f"{path}: the output path exists and is not a folder; choose a new or empty folder")
    try:
        entries = sorted(p.name for p in path.iterdir())
    except OSError as err:
        raise OutputError(describe_os_error(path, err)) from None
    if not entries:
        return
    manifest = _manifest(path)
    if manifest.get("command") == command:
        listed = manifest.get("files")
        foreign = [] if listed is None else sorted(set(_files_under(path)) - set(listed) - {OUTPUT_MANIFEST})
        if not foreign:
            return
        raise OutputError(f"{path}: holds files the previous `{command}` did not write ({', '.join(foreign[:5])}); "
                          "audio-dialogues replaces only its own output: move them away or choose another folder")
    if OUTPUT_MANIFEST not in entries and any(name in entries for name in previous):
        return
    written_by = f" (written by `{manifest['command']}`)" if manifest.get("command") else ""
    raise OutputError(f"{path}: not empty and not the output of an earlier `{command}`{written_by}: it holds "
                      f"{', '.join(entries[:5])}{' ...' if len(entries) > 5 else ''}; nothing was changed. "
                      "Choose a new or empty folder")


def claim_output_folder(path: str | os.PathLike, command: str, *, previous: Collection[str] = ()) -> None:
    """Make ``path`` ``command``'s output folder, written into over several runs (see :func:`check_output_folder`)."""
    path = Path(path)
    check_output_folder(path, command, previous=previous)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{describe_os_error(path, err)}: cannot create the output folder; choose another "
                          "one") from None
    if not (path / OUTPUT_MANIFEST).exists():
        with atomic_write(path / OUTPUT_MANIFEST) as f:
            json.dump({"command": command}, f)


def remove_owned(folder: str | os.PathLike, owned: Callable[[str], bool]) -> list[str]:
    """Delete the files under ``folder`` that ``owned`` claims (by relative POSIX path), then the folders left empty.

    Returns what is left (files not claimed); ``folder`` itself goes only when nothing is left.
    """
    folder = Path(folder)
    left = []
    for name in _files_under(folder):
        if owned(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)
        else:
            left.append(name)
    for parent, _dirs, _files in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            os.rmdir(parent)
    return left


@contextlib.contextmanager
def replaced_folder(path: str | os.PathLike, command: str) -> Iterator[Path]:
    """Write ``command``'s output folder whole: yields a new folder beside ``path`` that replaces it on success.

    ``path`` must be missing, empty or ``command``'s earlier output (:func:`check_output_folder`), checked
    before anything is written and again before the swap. The new folder gets a manifest of its files and
    is renamed into place; only then are the earlier output's listed files deleted, so a failure at any point
    leaves the earlier output whole and removes only the new folder.
    """
    path = Path(path)
    check_output_folder(path, command)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    new, old = path.with_name(f"{TMP_PREFIX}{path.name}-{tag}"), path.with_name(f"{TMP_PREFIX}{path.name}-old-{tag}")
    try:
        new.mkdir(parents=True)
    except OSError as err:
        raise OutputError(describe_os_error(path, err)) from None
    listed: set[str] = set()
    try:
        yield new
        files = _files_under(new)
        with atomic_write(new / OUTPUT_MANIFEST) as f:
            json.dump({"command": command, "files": files}, f, indent=1)
        check_output_folder(path, command)
        replacing = path.exists()
        try:
            if replacing:
                listed = set(_manifest(path).get("files") or [])
                os.rename(path, old)
            try:
                os.rename(new, path)
            except OSError:
                if replacing:
                    os.rename(old, path)
                raise
        except OSError as err:
            raise OutputError(describe_os_error(path, err)) from None
    finally:
        shutil.rmtree(new, ignore_errors=True)  # only when it was not renamed into place: all of it is ours
    if replacing:
        left = remove_owned(old, lambda name: name in listed or name == OUTPUT_MANIFEST)
        if left:  # written there between the check and the swap: kept where they are
            logging.getLogger(__name__).warning("%s keeps %s, added to the earlier output while it was being "
                                                "replaced", old, ", ".join(left[:5]))


def iter_lines(
    path: str | os.PathLike,
    error: type[Exception] = ValueError,
    *,
    part: tuple[int, int] | None = None,
    skipped: Callable[[bytes], None] | None = None,
) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line of a UTF-8 text file, line endings kept, read line by line.

    A byte-order mark on the first line is dropped (spreadsheet programs write one). A line that is not
    UTF-8 raises ``error`` naming the file and the line, not a decoder's buffer offset. Suits
    :mod:`csv` readers too: they take any iterable of lines, and :func:`csv_rows` gives their rows line numbers.

    ``part=(index, count)`` gives only the lines that start in the ``index``-th of ``count`` equal byte
    ranges of the file, so ``count`` readers together see every line exactly once, none decoding the
    others' lines. Lines before the part go undecoded to ``skipped`` (when given); counting them is how
    the part's line numbers are known.
    """
    path = Path(path)
    with open_input(path, error) as f:
        start, stop = 0, None
        if part is not None:
            size = os.fstat(f.fileno()).st_size
            start, stop = size * part[0] // part[1], size * (part[0] + 1) // part[1]
        pos = 0
        for lineno, raw in enumerate(f, start=1):
            if pos < start:
                pos += len(raw)
                if skipped is not None:
                    skipped(raw)
                continue
            if stop is not None and pos >= stop:
                return
            pos += len(raw)
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise error(f"{path}:{lineno}: not UTF-8 text (byte {err.start + 1} of the line); "
                            "save the file as UTF-8") from None


def csv_rows(
    path: str | os.PathLike, error: type[Exception] = ValueError, **reader_args: Any
) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` for each non-empty row of a CSV/TSV file (``reader_args`` go to :func:`csv.reader`).

    The line number is where the row starts (a quoted field may span lines). BOM and UTF-8 as in
    :func:`iter_lines`; rows the :mod:`csv` module refuses (NUL bytes, a field beyond its size limit)
    raise ``error`` naming the line.
    """
    lines = iter_lines(path, error)
    position = {"line": 0}

    def counted() -> Iterator[str]:
        for lineno, text in lines:
            position["line"] = lineno
            yield text

    reader = csv.reader(counted(), **reader_args)
    while True:
        start = position["line"] + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise error(f"{path}:{start}: unreadable row: {err}") from None
        if row:
            yield start, row


#: A JSON escape of half a UTF-16 surrogate pair; a valid pair decodes to one character, a lone half does not.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any, field: str = "") -> tuple[str, str] | None:
    """``(field, character)`` of the first string (or key) in ``value`` holding a lone surrogate."""
    if isinstance(value, str):
        surrogate = _LONE_SURROGATE.search(value)
        return (field, surrogate.group()) if surrogate else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{field}.{key}" if field else str(key)
            found = _lone_surrogate(key, f"{inner} (the key)") or _lone_surrogate(item, inner)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{field}[{index}]")
            if found:
                return found
    return None


def _check_surrogates(raw: str, value: Any, where: str, error: type[Exception]) -> None:
    """Refuse text JSON allows but no UTF-8 writer (Arrow, a JSON file) accepts: an escaped lone surrogate.

    Only text holding such an escape is walked, so the common case costs one regular-expression scan.
    """
    if not _SURROGATE_ESCAPE.search(raw):
        return
    try:
        found = _lone_surrogate(value)
    except RecursionError:
        found = ("a deeply nested field", "")
    if found:
        field, char = found
        at = f"{where}{field}" if field.startswith("[") else f"{where}: {field or 'the value'}"
        raise error(f"{at} holds a lone UTF-16 surrogate {char!r} (half of an escaped pair such as "
                    "\\ud83d\\ude00), which cannot be stored as UTF-8; fix the escape")


def _json_failure(where: str, err: Exception) -> str:
    """Words for what :func:`json.loads` refused that is not plain syntax."""
    if isinstance(err, RecursionError):
        return f"{where}: JSON nested too deeply (hundreds of levels of lists or objects); this is not a record"
    # The only other ValueError of json.loads: an integer longer than Python converts.
    return (f"{where}: a number too long to read (more than {sys.get_int_max_str_digits()} digits); "
            "no field takes such a number: fix the value")


def load_json(path: str | os.PathLike, error: type[Exception] = ValueError) -> Any:
    """Read a whole JSON document, every failure raising ``error`` that names the file and the line.

    A byte-order mark is accepted. Besides malformed JSON, this names text that is not UTF-8 (by line),
    nesting deep enough to exhaust the parser and integers too long for Python to convert.
    """
    path = Path(path)
    raw = read_input(path, error)
    try:
        text = raw.decode("utf-8-sig")
        value = json.loads(text)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text; save the file as UTF-8") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}:{err.lineno}: malformed JSON: {describe_json_error(err)}") from None
    except (RecursionError, ValueError) as err:
        long_number = re.search(rb"\d{%d}" % (sys.get_int_max_str_digits() + 1), raw)
        at = raw[: long_number.start()].count(b"\n") + 1 if long_number and isinstance(err, ValueError) else None
        raise error(_json_failure(f"{path}:{at}" if at else str(path), err)) from None
    _check_surrogates(text, value, str(path), error)
    return value


def describe_json_error(err: json.JSONDecodeError) -> str:
    """json's reason with the column, as a phrase: some reasons end in "at" ("Invalid control character at")."""
    return f"{err.msg}{' column' if err.msg.endswith(' at') else ' at column'} {err.colno}"


def iter_jsonl(
    path: str | os.PathLike,
    error: type[Exception] = ValueError,
    *,
    part: tuple[int, int] | None = None,
    skipped: Callable[[bytes], None] | None = None,
) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` for each non-blank line of a JSON Lines file, read line by line.

    ``where`` is ``path:line``. A byte-order mark on the first line is accepted; a line that is not
    UTF-8 or not JSON raises ``error`` naming the line (with a hint when the file is a JSON array or
    pretty-printed JSON rather than JSON Lines), as do nesting too deep and integers too long to read.
    ``part`` and ``skipped``: as in :func:`iter_lines`.
    """
    path = Path(path)
    for lineno, line in iter_lines(path, error, part=part, skipped=skipped):
        where = f"{path}:{lineno}"
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            head = line.lstrip()[:1]
            hint = ""
            if head == "[":
                hint = " (this looks like a JSON array: write one JSON object per line, or name the file .json)"
            elif lineno == 1 and head == "{":
                hint = " (a pretty-printed JSON object? write one object per line)"
            raise error(f"{where}: malformed JSON Lines record: {describe_json_error(err)}{hint}") from None
        except (RecursionError, ValueError) as err:
            raise error(_json_failure(where, err)) from None
        _check_surrogates(line, value, where, error)
        yield where, value
