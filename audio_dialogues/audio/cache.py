"""Where fetched clips live, and how to find a verified one with a couple of system calls.

Layout of a cache folder::

    <cache>/<2 hex chars>/<ytid>_<start ms>_<end ms>.flac    the verified clip (or .wav)
    <cache>/<2 hex chars>/<ytid>_<start ms>_<end ms>.json    its verification record
    <cache>/journal/<host>.jsonl                             what each fetch run did (see journal.py)
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
The check costs one small read and one stat per clip and never decodes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..files import FAULTS, OutputError, atomic_write
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
            record = cls(**data)
        else:  # written by another version: keep the fields this one knows
            record = cls(**{k: data[k] for k in _RECORD_FIELDS if k in data})
        file = record.file
        if (record.format not in CACHE_AUDIO_FORMATS or type(file) is not str or "/" in file
                or file[:1] in (".", "")):
            raise ValueError(f"bad clip record: {data!r}")
        return record


_RECORD_FIELDS = frozenset(ClipRecord.__dataclass_fields__)


def lookup(cache_dir: str | Path, clip: Clip) -> tuple[ClipRecord, str] | None:
    """``(record, audio path)`` if the record of ``clip`` names audio present with the recorded size.

    Unknown times (``clip.start_s is None``) are never cached: the segment is not defined. Plain strings,
    not pathlib: this runs per clip for 100k+ clips on every re-run and build.
    """
    if clip.start_s is None:
        return None
    folder = f"{os.fspath(cache_dir)}/{hashlib.sha1(clip.ytid.encode()).hexdigest()[:2]}/"
    try:
        fd = os.open(f"{folder}{clip.key}{RECORD_SUFFIX}", os.O_RDONLY)  # 3x cheaper than open()
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
