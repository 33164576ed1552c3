"""The folder index: which files in the audio folders may hold a clip, found by their names.

Audio of AudioSet and MusicCaps clips circulates under several naming schemes; all of these are
recognised, with any of the extensions in :data:`AUDIO_EXTENSIONS`:

- ``Y<ytid>.<ext>`` (AudioSet-SL, WavCaps, the authors' release) and ``<ytid>.<ext>``: the clip, or the
  whole video;
- ``<ytid>_<start>.<ext>`` and ``<ytid>_<start>_<end>.<ext>``, times in seconds (``30``, ``30.0``, ``30.000``);
- ``<ytid>_<start ms>.<ext>`` (the strong-label ``segment_id``).

The folders are listed once per prepare (or per streaming worker) into an in-memory index (no glob per
clip); names are parsed only when their ytid is looked up, so indexing 160k files costs little more
than listing them.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..files import describe_os_error, input_problem, special_kind
from ..sources.clips import YTID_LENGTH, YTID_RE, Clip

#: Preference order when one clip has several files: lossless first.
AUDIO_EXTENSIONS = ("wav", "flac", "mp3", "ogg", "opus", "m4a", "webm", "mp4", "aac")
_EXT_RANK = {ext: rank for rank, ext in enumerate(AUDIO_EXTENSIONS)}
_AUDIO_SUFFIXES = tuple(f".{ext}" for ext in AUDIO_EXTENSIONS)
_FEW_FOLDERS = 8
_TIME_TOLERANCE_S = 0.0015

PathLike = str | os.PathLike
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    path: str
    #: Time fields from the name, unit unknown (seconds or ms) until matched against a clip.
    start: float | None
    end: float | None
    rank: tuple[int, int]


def _parse_time(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and math.isfinite(value) else None


def parse_audio_name(stem: str) -> list[tuple[str, float | None, float | None]]:
    """Possible ``(ytid, start, end)`` readings of a file stem; several when a leading ``Y`` is ambiguous.

    A reading that names no real clip simply never matches, so offering both readings of
    ``Y<11 chars>...`` is safe where guessing one is not.
    """
    readings: list[tuple[str, float | None, float | None]] = []
    for offset in (0, 1):
        if offset and not stem.startswith("Y"):
            continue
        ytid = stem[offset : offset + YTID_LENGTH]
        rest = stem[offset + YTID_LENGTH :]
        if len(ytid) != YTID_LENGTH or not YTID_RE.match(ytid):
            continue
        if not rest:
            readings.append((ytid, None, None))
            continue
        if rest[0] != "_":
            continue
        parts = rest[1:].split("_")
        times = [_parse_time(p) for p in parts]
        if len(parts) in (1, 2) and all(t is not None for t in times):
            readings.append((ytid, times[0], times[1] if len(times) == 2 else None))
    return readings


class AudioIndex:
    """All recognisable audio files below some folders, by ytid.

    Built for 100k+ files: each folder is listed once (``os.scandir``: names and file types, no ``stat`` but for
    symbolic links) and its audio file names are sorted; a ytid's files are then found by bisection (names start
    with the ytid or ``Y`` + ytid) and parsed only when that ytid is looked up. An audio name that is no regular
    file (a FIFO, a socket, a device, a link to one) is skipped with a warning naming it.

    A folder given that cannot be listed (no permission) is an error naming it. A subfolder that
    cannot be listed is skipped with a warning naming it (a disk's root holds an unreadable
    ``lost+found``): its clips count as not found, and :attr:`unreadable` lists it.
    """

    def __init__(self, folders: Sequence[PathLike] = ()) -> None:
        # Absolute, so the paths stored in a prepared dataset still work from another working directory.
        self.folders = [Path(os.path.abspath(f)) for f in folders]
        #: Every folder listed (the roots and their subfolders): adding or removing a file changes one's mtime.
        self.dirs: list[str] = []
        #: Subfolders skipped because they could not be listed.
        self.unreadable: list[str] = []
        self._folder_rank: list[int] = []
        listed: list[list[str]] = []
        for folder_rank, folder in enumerate(self.folders):
            stack = [str(folder)]
            while stack:
                current = stack.pop()
                try:
                    with os.scandir(current) as listing:
                        entries = list(listing)
                except (FileNotFoundError, NotADirectoryError):
                    if current == str(folder):
                        what = "a file, not a folder" if os.path.exists(folder) else "not there"
                        raise ConfigError(f"audio_dir {folder} is {what}") from None
                    continue  # removed since its parent was listed
                except OSError as err:
                    if current == str(folder):  # no permission, here or on a parent folder
                        raise ConfigError(f"audio_dir {describe_os_error(current, err)}") from None
                    logger.warning("audio_dir: skipped subfolder %s; clips there count as not found",
                                   describe_os_error(current, err))
                    self.unreadable.append(current)
                    continue
                self.dirs.append(current)
                self._folder_rank.append(folder_rank)
                audio = []
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.name.lower().endswith(_AUDIO_SUFFIXES) and _regular(entry):
                        audio.append(entry.name)
                listed.append(audio)
        # One sorted list per folder when there are few folders (no per-name work beyond the sort), else a
        # single list of "<name>\0<folder number>" so a lookup costs two bisections however many folders.
        if len(listed) <= _FEW_FOLDERS:
            self._sorted = [(number, sorted(audio)) for number, audio in enumerate(listed)]
        else:
            merged = sorted(f"{n}\0{number}" for number, audio in enumerate(listed) for n in audio)
            self._sorted = [(-1, merged)]
        self._parsed: dict[str, list[IndexEntry]] = {}

    def __len__(self) -> int:
        return sum(len(names) for _, names in self._sorted)

    def _entries(self, ytid: str) -> list[IndexEntry]:
        entries = self._parsed.get(ytid)
        if entries is None:
            entries = []
            for number, names in self._sorted:
                for prefix in (ytid, "Y" + ytid):
                    i = bisect.bisect_left(names, prefix)
                    while i < len(names) and names[i].startswith(prefix):
                        name, folder = names[i], number
                        if folder < 0:
                            name, _, tail = name.partition("\0")
                            folder = int(tail)
                        i += 1
                        stem, _, ext = name.rpartition(".")
                        for found, start, end in parse_audio_name(stem):
                            if found == ytid:
                                entries.append(IndexEntry(os.path.join(self.dirs[folder], name), start, end,
                                                      (self._folder_rank[folder], _EXT_RANK[ext.lower()])))
            entries = sorted(set(entries), key=lambda e: (e.rank, e.path))
            self._parsed[ytid] = entries
        return entries

    def find_entry(self, clip: Clip) -> IndexEntry | None:
        """The best file for ``clip``: an exact window, then a matching start, then a whole-clip file.

        A clip with unknown times takes a whole-clip file, or the only windowed file of its ytid.
        """
        entries = self._entries(clip.ytid)
        if not entries:
            return None
        if clip.start_s is None:
            bare = [e for e in entries if e.start is None]
            if bare:
                return bare[0]
            windows = {(e.start, e.end) for e in entries}
            return entries[0] if len(windows) == 1 else None
        best: tuple[int, IndexEntry] | None = None
        for entry in entries:
            score = _match(entry, clip)
            if score is not None and (best is None or score < best[0]):
                best = (score, entry)
        return best[1] if best else None

    def find(self, clip: Clip) -> str | None:
        entry = self.find_entry(clip)
        return None if entry is None else entry.path


def _regular(entry: os.DirEntry) -> bool:
    """Whether a listed audio name is a regular file (a link to one included); else skipped with a warning.

    A FIFO named like a clip would block the first read of it forever, a link to ``/dev/zero`` never end.
    The listing's file type answers without a ``stat`` for all but symbolic links.
    """
    if entry.is_file(follow_symlinks=False):
        return True
    try:
        kind = special_kind(entry.stat().st_mode)
    except OSError:  # a dangling link: the file is not there
        return False
    if kind is not None:
        logger.warning("audio_dir: skipped %s: it %s; its clip counts as not found", entry.path,
                       input_problem(entry.path) or kind)
    return kind is None


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _TIME_TOLERANCE_S


def _match(entry: IndexEntry, clip: Clip) -> int | None:
    """0: exact window; 1: start matches; 2: a whole-clip file; None: another segment of the video."""
    if entry.start is None:
        return 2
    assert clip.start_s is not None and clip.end_s is not None
    for scale in (1.0, 1000.0):  # seconds, or milliseconds as in a strong-label segment_id
        if _same(entry.start / scale, clip.start_s):
            if entry.end is None:
                return 1
            if _same(entry.end / scale, clip.end_s):
                return 0
    return None


# --- how long is a file: its header, read cheaply ------------------------------------------------
