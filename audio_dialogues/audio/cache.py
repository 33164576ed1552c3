"""Where fetched clips live, and how to find a verified one with a couple of system calls.

Layout of a cache folder::

    <cache>/<2 hex chars>/<ytid>_<start ms>_<end ms>.flac    the verified clip (or .wav)
    <cache>/<2 hex chars>/<ytid>_<start ms>_<end ms>.json    its verification record
    <cache>/journal/<host>.jsonl                             what each fetch run did (see journal.py)
    <cache>/index/records/<2 hex chars>.json                 the records of a shard folder (RecordIndex)
    <cache>/.work/                                           clip locks and temporaries while a run works

Nothing else stays: a lock file lives only while its clip is being fetched (see locking.py), and what a
killed run leaves in ``.work`` is swept by the next run.

The shard is the first byte of SHA-1 of the YouTube id, so 100k+ clips spread evenly over 256 folders
(no folder of a million entries), every clip of one video shares a folder, and any machine computes the
same path for the same clip. Names never contain anything but the validated id and integers, so nothing
can be written outside the cache.

A clip counts as cached when its record exists, names an audio file, and that file has the size the
record says. The record is written only after the audio was decoded and checked (length, rate,
channels), and the audio itself is renamed into place only after that check: a file that is visible
under a final name was complete once, and one truncated since (disk full, bad copy) fails the size test.
The check costs one small read and one stat per clip and never decodes; over a whole config,
:class:`RecordIndex` spares the read while a shard folder is unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import operator
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import FAULTS, TMP_PREFIX, FileIdentity, OutputError, atomic_write
from ..sources.clips import Clip

CACHE_ENV = "AUDIO_DIALOGUES_CACHE"
#: The formats the clip cache stores (``fetch --format``); not :data:`audio_dialogues.export.FORMATS`.
CACHE_AUDIO_FORMATS = ("flac", "wav")
RECORD_SUFFIX = ".json"
#: Records are ~400 bytes; one small read each (a 64 KiB buffer per read costs more than the read).
_RECORD_READ = 4096
WORK_DIRNAME = ".work"
#: The free space a cache must still have: less, after a failed write, means the disk is full.
PROBE_BYTES = 64 * 1024


def default_cache_dir() -> Path:
    """``$AUDIO_DIALOGUES_CACHE``, else ``$XDG_CACHE_HOME/audio_dialogues/clips``, else ``~/.cache/...``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "audio_dialogues" / "clips"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """The clip cache to use: ``cache_dir`` if given, else :func:`default_cache_dir`; always absolute.

    Absolute, so that nothing stored (prepared paths, yt-dlp's output template) depends on the working
    directory.
    """
    return Path(os.path.abspath(os.path.expanduser(cache_dir if cache_dir is not None else default_cache_dir())))


def shard_of(ytid: str) -> str:
    """The shard folder of a video: two hex digits, the same for every clip of that video."""
    return hashlib.sha1(ytid.encode("ascii")).hexdigest()[:2]


def clip_dir(cache_dir: str | Path, clip: Clip) -> Path:
    return Path(cache_dir) / shard_of(clip.ytid)


def audio_path(cache_dir: str | Path, clip: Clip, fmt: str) -> Path:
    """Where ``clip`` is stored in format ``fmt`` (the file may not exist)."""
    if fmt not in CACHE_AUDIO_FORMATS:
        raise UsageError(f"audio format must be one of {CACHE_AUDIO_FORMATS}, got {fmt!r}")
    return clip_dir(cache_dir, clip) / f"{clip.key}.{fmt}"


def record_path(cache_dir: str | Path, clip: Clip) -> Path:
    return clip_dir(cache_dir, clip) / f"{clip.key}{RECORD_SUFFIX}"


_DECODER = json.JSONDecoder()


@dataclass(slots=True)
class ClipRecord:
    """What verification established about a cached clip; stored next to it as JSON."""

    file: str
    size: int
    format: str
    sample_rate: int
    channels: int
    frames: int
    #: The rate that was asked for (``None``: the source's own), so a fetch with other options refetches.
    requested_sample_rate: int | None
    #: How much shorter than requested the clip is because the source video itself ends early.
    short_by_s: float = 0.0
    source_duration_s: float | None = None
    url: str = ""
    fetched_at: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ClipRecord:
        # raw_decode: json.loads without its encoding sniffing and whitespace regexes (a third of a lookup).
        data = _DECODER.raw_decode(text.decode("utf-8") if isinstance(text, bytes) else text)[0]
        if type(data) is not dict:
            raise ValueError(f"bad clip record: {data!r:.100}")
        if data.keys() <= _RECORD_FIELDS:
            return cls(**data).checked()
        # written by another version: keep the fields this one knows
        return cls(**{k: data[k] for k in _RECORD_FIELDS if k in data}).checked()

    def checked(self) -> ClipRecord:
        """``self``, or ``ValueError`` if it names no audio file of this folder in a cache format.

        The file name becomes a path: nothing read from disk may point outside its shard folder.
        """
        file = self.file
        if self.format not in CACHE_AUDIO_FORMATS or type(file) is not str or "/" in file or file[:1] in (".", ""):
            raise ValueError(f"bad clip record: {self!r}")
        return self



_RECORD_FIELDS = frozenset(ClipRecord.__dataclass_fields__)
#: A record's fields in declaration order, as :class:`RecordIndex` stores them (``ClipRecord(*row)``); an
#: index written by a version with other fields is not believed.
_RECORD_ORDER = list(ClipRecord.__dataclass_fields__)
_row = operator.attrgetter(*_RECORD_ORDER)


def lookup(cache_dir: str | Path, clip: Clip) -> tuple[ClipRecord, str] | None:
    """``(record, audio path)`` if the record of ``clip`` names audio present with the recorded size.

    Unknown times (``clip.start_s is None``) are never cached: the segment is not defined. Plain strings,
    not pathlib: this runs per clip for 100k+ clips on every re-run and build.
    """
    if clip.start_s is None:
        return None
    return lookup_key(f"{os.fspath(cache_dir)}/{hashlib.sha1(clip.ytid.encode()).hexdigest()[:2]}/", clip.key)


def lookup_key(folder: str, key: str) -> tuple[ClipRecord, str] | None:
    """:func:`lookup` of the clip ``key`` (:attr:`Clip.key`) in its shard ``folder`` (a path ending in ``/``)."""
    try:
        fd = os.open(f"{folder}{key}{RECORD_SUFFIX}", os.O_RDONLY)  # 3x cheaper than open()
        try:
            raw = os.read(fd, _RECORD_READ)
            while len(raw) % _RECORD_READ == 0 and raw:  # a record larger than one read (a big ``extra``)
                more = os.read(fd, _RECORD_READ)
                if not more:
                    break
                raw += more
        finally:
            os.close(fd)
        record = ClipRecord.from_json(raw)
        path = folder + record.file
        if os.stat(path).st_size != record.size:
            return None
    except (OSError, ValueError, TypeError, RecursionError):
        return None
    return record, path


#: Where :class:`RecordIndex` keeps one file per shard folder.
RECORD_INDEX_DIRNAME = "index/records"
_RECORD_INDEX_FORMAT = 1
#: How long a folder must have stood unchanged before its records are indexed: a change within the same
#: tick of the file system's clock (up to 2 s: FAT; 1 s: ext3, HFS+) leaves a folder's times as they were,
#: so records read in that tick may be stale under times that still match ("racily clean" in git's index).
RACY_NS = 3_000_000_000
#: A temporary in the index folder this much older than a write takes was left by a killed run.
_STALE_TEMPORARY_NS = 600 * 10**9


class _Folder:
    """What a :class:`RecordIndex` knows of one shard folder during a run."""

    __slots__ = ("path", "identity", "settled", "trusted", "seen")

    def __init__(self, path: str, identity: FileIdentity | None, settled: bool, trusted: dict[str, Any]) -> None:
        self.path = path
        #: The folder's identity before this run read any record in it; ``None``: no folder.
        self.identity = identity
        #: Whether the folder had then stood unchanged for :data:`RACY_NS` (records read since may be indexed).
        self.settled = settled
        #: The stored rows that hold for the folder as it is (empty when the index file does not hold):
        #: JSON as read, checked per row when used.
        self.trusted = trusted
        #: Rows this run read from record files, after :attr:`identity` was taken.
        self.seen: dict[str, Sequence[Any]] = {}


class RecordIndex:
    """:func:`lookup` for many clips, reading one index file per shard folder instead of a record per clip.

    Why a stored record can be believed without reading its file: records are only ever put in place by a
    rename (:func:`write_record`), and creating, renaming or removing any entry of a folder changes the
    folder's mtime and ctime (which no tool can set back). An index file holds records of its folder read
    *after* the folder's :class:`~audio_dialogues.files.FileIdentity` was taken, and that identity,
    provided the folder had then stood unchanged for :data:`RACY_NS` by the file system's own clock (the
    time of a file created just before; a client's clock may run apart from a file server's). While the
    folder keeps that identity, no record in it was added, replaced or removed since. Otherwise, or when
    the index file cannot be read, records are read from their own files as :func:`lookup` does. The audio
    is still stat'ed per clip, so a file truncated in place fails its size test as before. A record edited
    in place (which nothing in this package does) goes unnoticed until its folder changes.

    The folder is opened, not just stat'ed: NFS clients revalidate attributes on open (close-to-open
    consistency) rather than answer from their attribute cache. No NFS mount was at hand to show it here.

    One per run; :meth:`save` stores what the run learnt. Several processes sharing a cache may each save:
    every index file is whole and holds for the identity it names, so the last one written wins and the
    worst a lost write costs is reading records again.
    """

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = os.fspath(cache_dir)
        self._index_dir = f"{self.cache_dir}/{RECORD_INDEX_DIRNAME}"
        self._folders: dict[str, _Folder] = {}
        #: The file system's time before any folder was looked at (``None``: none; nothing is saved).
        self._started_ns: int | None = None
        #: Whether a record was read from its file: :meth:`save` would store it.
        self.learnt = False

    def _fs_now(self) -> int | None:
        """The time on the cache's file system now: the mtime of a nameless file made in the index folder."""
        try:
            os.makedirs(self._index_dir, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._index_dir, prefix=TMP_PREFIX) as f:  # O_TMPFILE: no leftover
                return os.fstat(f.fileno()).st_mtime_ns
        except OSError:
            return None  # a read-only cache: its index can be read, not written

    def _folder_state(self, path: str, now: int | None) -> tuple[FileIdentity | None, bool]:
        """``(identity, settled)`` of a shard folder (``None``: no folder); ``now`` from :meth:`_fs_now`."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None, False
        try:
            identity = FileIdentity.of_stat(os.fstat(fd))
        finally:
            os.close(fd)
        return identity, now is not None and now - max(identity.mtime_ns, identity.ctime_ns) >= RACY_NS

    def _open(self, shard: str) -> _Folder:
        if not self._folders:
            self._started_ns = self._fs_now()
        path = f"{self.cache_dir}/{shard}/"
        identity, settled = self._folder_state(path, self._started_ns)
        trusted: dict[str, Any] = {}
        if identity is not None:
            try:
                with open(f"{self._index_dir}/{shard}{RECORD_SUFFIX}", "rb") as f:
                    stored = json.loads(f.read())
                if (stored["format"] == _RECORD_INDEX_FORMAT and stored["fields"] == _RECORD_ORDER
                        and stored["folder"] == list(identity) and type(stored["records"]) is dict):
                    trusted = stored["records"]
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                pass  # no index, another version's or a damaged one: read the records themselves
        folder = self._folders[shard] = _Folder(path, identity, settled, trusted)
        return folder

    def lookup(self, clip: Clip) -> tuple[ClipRecord, str] | None:
        """What :func:`lookup` returns for ``clip``, from the index where it holds."""
        if clip.start_s is None:
            return None
        shard = hashlib.sha1(clip.ytid.encode()).hexdigest()[:2]
        folder = self._folders.get(shard) or self._open(shard)
        key = clip.key
        row = folder.trusted.get(key)
        if row is not None:
            try:
                record = ClipRecord(*row).checked()
                path = folder.path + record.file
                size = os.stat(path).st_size
            except OSError:
                return None  # the audio is gone
            except (ValueError, TypeError):
                pass  # a damaged row (a field missing, a name with a NUL or a lone surrogate): the record file says
            else:
                return (record, path) if size == record.size else None
        found = lookup_key(folder.path, key)
        if found is not None:
            folder.seen[key] = _row(found[0])
            self.learnt = True
        return found

    def save(self, fetched: Iterable[Clip] = ()) -> None:
        """Store what this run learnt of the records, and the records of the clips it ``fetched``.

        A folder that changed since this run first looked in it (it fetched into it, or another process
        did) has the records of every clip the run knows there read again after its new identity is
        taken. A folder changed less than :data:`RACY_NS` before is left for a later run, and an index
        that cannot be written is not kept (a read-only cache).
        """
        new: dict[str, set[str]] = {}
        for clip in fetched:
            if clip.start_s is not None:
                new.setdefault(hashlib.sha1(clip.ytid.encode()).hexdigest()[:2], set()).add(clip.key)
        now = self._fs_now()
        if now is None:
            return
        self._sweep(now)
        for shard in self._folders.keys() | new.keys():
            folder = self._folders.get(shard)
            path = f"{self.cache_dir}/{shard}/"
            identity, settled = self._folder_state(path, now)
            if identity is None:
                continue
            if folder is not None and folder.identity == identity:
                if not folder.seen or not folder.settled:
                    continue  # nothing new, or read too soon after a change to be believed later
                rows = {**folder.trusted, **folder.seen}
            elif not settled:
                continue
            else:
                keys = new.get(shard, set()) | (folder.trusted.keys() | folder.seen.keys() if folder else set())
                rows = {key: _row(found[0]) for key in keys if (found := lookup_key(path, key)) is not None}
            try:
                with atomic_write(f"{self._index_dir}/{shard}{RECORD_SUFFIX}") as f:
                    # dumps, not dump: dump encodes in Python, chunk by chunk
                    f.write(json.dumps({"format": _RECORD_INDEX_FORMAT, "fields": _RECORD_ORDER,
                                        "folder": identity, "records": rows}, separators=(",", ":")))
            except OutputError:
                return

    def _sweep(self, now: int) -> None:
        """Remove the temporaries of index writes that killed runs left (a live write takes milliseconds)."""
        try:
            with os.scandir(self._index_dir) as entries:
                for entry in entries:
                    if entry.name.startswith(TMP_PREFIX) and now - entry.stat().st_ctime_ns > _STALE_TEMPORARY_NS:
                        os.unlink(entry.path)
        except OSError:
            pass  # another run swept it first, or the folder cannot be listed: the next run tries again


def read_record(cache_dir: str | Path, clip: Clip) -> ClipRecord | None:
    """The record of ``clip`` if the audio it names is present with the recorded size, else ``None``."""
    found = lookup(cache_dir, clip)
    return None if found is None else found[0]


def cached_clip(cache_dir: str | Path, clip: Clip) -> Path | None:
    """The verified cached audio file of ``clip`` in any format, or ``None`` (one read and one stat)."""
    found = lookup(cache_dir, clip)
    return None if found is None else Path(found[1])


def work_dir(cache_dir: str | Path) -> Path:
    """Where clip locks and temporaries live while a run works (same file system: renames are atomic)."""
    return Path(cache_dir) / WORK_DIRNAME


def temporary_path(cache_dir: str | Path, clip: Clip, what: str) -> Path:
    """A fresh temporary name for ``clip`` in the work folder, swept with the clip's other leftovers."""
    return work_dir(cache_dir) / f"{clip.key}.{what}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def write_record(cache_dir: str | Path, clip: Clip, record: ClipRecord) -> Path:
    """Atomically (re)place the record of ``clip``; call only after its audio is in place."""
    path = record_path(cache_dir, clip)
    # The temporary is named ``.tmp-<clip key>-...`` like the fetcher's other temporaries of this clip,
    # so a kill's leftovers are swept with them.
    with atomic_write(path) as f:
        f.write(record.to_json())
    return path


def cache_fault(cache_dir: str | Path, err: OSError) -> str | None:
    """What is wrong with the cache if ``err`` says it cannot be written, else ``None`` (another error)."""
    if isinstance(err, OutputError):  # a record or journal write; its message names the path and the cause
        return f"the clip cache {cache_dir} cannot be written: {err}"
    what = FAULTS.get(err.errno or 0) if err.errno != errno.EEXIST else FAULTS[errno.ENOTDIR]
    if what is None:
        return None
    where = err.filename or cache_dir
    return f"the clip cache {cache_dir} cannot be written: {what} ({where})"


def check_writable(cache_dir: Path) -> None:
    """Make the cache's folders and write :data:`PROBE_BYTES` into it; raise ``OSError`` where that fails.

    Run before downloading, so that a cache that is a file, read-only or full is named as such at once
    instead of surfacing as failing downloads.
    """
    if cache_dir.exists() and not cache_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file stands where the cache folder should be", str(cache_dir))
    folder = work_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    probe_disk(folder)


def probe_disk(folder: Path) -> None:
    """Write and remove :data:`PROBE_BYTES` in ``folder``: ``OSError`` (ENOSPC, EFBIG ...) if it cannot."""
    path = folder / f"probe.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # Allocate for real: a sparse write could succeed on a full disk.
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, PROBE_BYTES)
            else:
                os.write(fd, b"\0" * PROBE_BYTES)
        finally:
            os.close(fd)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
