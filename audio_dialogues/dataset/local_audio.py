"""Finding the audio of a clip on disk: the user's own copies first, the clip cache last.

Audio of AudioSet and MusicCaps clips circulates under several naming schemes; all of these are
recognised, with any of the extensions in :data:`AUDIO_EXTENSIONS`:

- ``Y<ytid>.<ext>`` (AudioSet-SL, WavCaps, the authors' release) and ``<ytid>.<ext>``: the file is the clip;
- ``<ytid>_<start>.<ext>`` and ``<ytid>_<start>_<end>.<ext>``, times in seconds (``30``, ``30.0``, ``30.000``);
- ``<ytid>_<start ms>.<ext>`` (the strong-label ``segment_id``).

The folders are walked once per prepare into an in-memory index (no glob per clip). Their listing also
has a fingerprint, so a dataset prepared before new audio arrived is not served from cache afterwards.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..fetch.cache import cached_clip
from ..sources.clips import YTID_LENGTH, YTID_RE, Clip

#: What the builder does with a record whose audio is not found (defined here so the CLI need not import datasets).
MISSING_AUDIO_POLICIES = ("drop", "error", "keep")
#: Preference order when one clip has several files: lossless first.
AUDIO_EXTENSIONS = ("wav", "flac", "mp3", "ogg", "opus", "m4a", "webm")
_EXT_RANK = {ext: rank for rank, ext in enumerate(AUDIO_EXTENSIONS)}
_TIME_TOLERANCE_S = 0.0015

PathLike = str | os.PathLike


@dataclass(frozen=True, slots=True)
class _Entry:
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
    return value if value >= 0 else None


def parse_audio_name(stem: str) -> list[tuple[str, float | None, float | None]]:
    """Possible ``(ytid, start, end)`` readings of a file stem; several when a leading ``Y`` is ambiguous.

    A reading that names no real clip simply never matches, so offering both readings of
    ``Y<11 chars>...`` is safe where guessing one is not.
    """
    readings = []
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
    """All recognisable audio files below some folders, by ytid."""

    def __init__(self, folders: Sequence[PathLike] = ()) -> None:
        # Absolute, so the paths stored in a prepared dataset still work from another working directory.
        self.folders = [Path(os.path.abspath(f)) for f in folders]
        self._by_ytid: dict[str, list[_Entry]] = {}
        for folder_rank, folder in enumerate(self.folders):
            if not folder.is_dir():
                raise FileNotFoundError(f"audio_dir {folder} is not a directory")
            for entry in _walk(folder):
                stem, dot, ext = entry.name.rpartition(".")
                ext_rank = _EXT_RANK.get(ext.lower()) if dot else None
                if ext_rank is None:
                    continue
                for ytid, start, end in parse_audio_name(stem):
                    found = _Entry(entry.path, start, end, (folder_rank, ext_rank))
                    self._by_ytid.setdefault(ytid, []).append(found)
        for entries in self._by_ytid.values():
            entries.sort(key=lambda e: e.rank)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_ytid.values())

    def find(self, clip: Clip) -> str | None:
        """The best file for ``clip``: an exact window, then a matching start, then a whole-clip file.

        A clip with unknown times takes a whole-clip file, or the only windowed file of its ytid.
        """
        entries = self._by_ytid.get(clip.ytid)
        if not entries:
            return None
        if clip.start_s is None:
            bare = [e for e in entries if e.start is None]
            if bare:
                return bare[0].path
            windows = {(e.start, e.end) for e in entries}
            return entries[0].path if len(windows) == 1 else None
        best: tuple[int, _Entry] | None = None
        for entry in entries:
            score = _match(entry, clip)
            if score is not None and (best is None or score < best[0]):
                best = (score, entry)
        return best[1].path if best else None


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _TIME_TOLERANCE_S


def _match(entry: _Entry, clip: Clip) -> int | None:
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


def _walk(folder: Path) -> Iterator[os.DirEntry]:
    """Every file below ``folder`` (symlinks to files included, symlinked folders not followed)."""
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file():
                    yield entry


def listing_fingerprint(folder: Path) -> str:
    """A digest of the names, sizes and modification times of every file below ``folder``.

    Cheap (one stat per file, no reads) and it changes when audio is added, removed or replaced.
    """
    digest = hashlib.blake2b(digest_size=16)
    for entry in sorted(_walk(folder), key=lambda e: e.path):
        st = entry.stat()
        digest.update(f"{entry.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class AudioResolver:
    """Clip -> local audio path: ``audio_dirs`` in the order given, then the clip cache."""

    def __init__(self, audio_dirs: Sequence[PathLike] = (), cache_dir: PathLike | None = None) -> None:
        self.index = AudioIndex(audio_dirs)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def resolve(self, clip: Clip) -> Path | None:
        found = self.index.find(clip)
        if found is not None:
            return Path(found)
        if self.cache_dir is not None and clip.start_s is not None:
            return cached_clip(self.cache_dir, clip)
        return None
