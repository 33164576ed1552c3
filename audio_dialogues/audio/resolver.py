"""Finding the audio of a clip on disk: the user's own copies first, the clip cache last.

Audio of AudioSet and MusicCaps clips circulates under several naming schemes; all of these are
recognised, with any of the extensions in :data:`AUDIO_EXTENSIONS`:

- ``Y<ytid>.<ext>`` (AudioSet-SL, WavCaps, the authors' release) and ``<ytid>.<ext>``: the clip, or the
  whole video;
- ``<ytid>_<start>.<ext>`` and ``<ytid>_<start>_<end>.<ext>``, times in seconds (``30``, ``30.0``, ``30.000``);
- ``<ytid>_<start ms>.<ext>`` (the strong-label ``segment_id``).

The folders are listed once per prepare (or per streaming worker) into an in-memory index (no glob per
clip); names are parsed only when their ytid is looked up, so indexing 160k files costs little more
than listing them.

A local file is checked before it is used (:meth:`AudioResolver.resolve`): its header says how long it
is, so a file that cannot be read is reported with its clip instead of failing later inside a decoder,
and a file that holds more than the clip (a whole video, or a ``<ytid>_<start>_<end>`` file longer than
its name says) is cut to the clip's window once, into the clip cache, exactly where a download of that
clip would go. Every consumer (both decoders, chat export, the Hub) then sees the clip itself.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudioDialoguesError, ConfigError
from ..files import FileIdentity, describe_os_error, input_problem, open_regular, special_kind
from ..sources.clips import YTID_LENGTH, YTID_RE, Clip
from .cache import ClipRecord, audio_path, cached_clip, lookup, record_path, write_record
from .ffmpeg import FFMPEG_ONLY_EXTENSIONS, find_ffmpeg, header_duration

#: What the builder does with a record whose audio is not found (defined here so the CLI need not import datasets).
MISSING_AUDIO_POLICIES = ("drop", "error", "keep")
#: Preference order when one clip has several files: lossless first.
AUDIO_EXTENSIONS = ("wav", "flac", "mp3", "ogg", "opus", "m4a", "webm", "mp4", "aac")
_EXT_RANK = {ext: rank for rank, ext in enumerate(AUDIO_EXTENSIONS)}
_AUDIO_SUFFIXES = tuple(f".{ext}" for ext in AUDIO_EXTENSIONS)
_FEW_FOLDERS = 8
_TIME_TOLERANCE_S = 0.0015
#: A file this much longer than its clip holds more than the clip (encoder padding is ~0.05 s).
LONGER_THAN_CLIP_S = 0.5
#: How much of a window a file may lack and still give the clip: the same allowance a fetched clip gets.
WINDOW_TOLERANCE_S = 0.05
HEADER_BYTES = 4096

PathLike = str | os.PathLike
logger = logging.getLogger(__name__)


class UnusableAudioError(AudioDialoguesError):
    """A local file that exists but cannot serve as the clip: unreadable, empty, or not holding its window.

    ``reason`` is the short form counted in reports; the message names the file and what is wrong.
    """

    def __init__(self, message: str, reason: str = "undecodable audio") -> None:
        super().__init__(message)
        self.reason = reason


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
    return value if value >= 0 and math.isfinite(value) else None


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
        self._parsed: dict[str, list[_Entry]] = {}

    def __len__(self) -> int:
        return sum(len(names) for _, names in self._sorted)

    def _entries(self, ytid: str) -> list[_Entry]:
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
                                entries.append(_Entry(os.path.join(self.dirs[folder], name), start, end,
                                                      (self._folder_rank[folder], _EXT_RANK[ext.lower()])))
            entries = sorted(set(entries), key=lambda e: (e.rank, e.path))
            self._parsed[ytid] = entries
        return entries

    def find_entry(self, clip: Clip) -> _Entry | None:
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
        best: tuple[int, _Entry] | None = None
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


# --- how long is a file: its header, read cheaply ------------------------------------------------


#: ``data`` chunk sizes that a writer to a pipe leaves when it cannot seek back: no promise of a length.
_WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)


def _wav_data(head: bytes, size: int) -> tuple[int, int, int, int] | None:
    """``(bytes promised, bytes present, block align, rate)`` of a RIFF/WAVE file's ``data`` chunk.

    From the ``fmt `` and ``data`` chunk headers in ``head`` and the file's ``size`` (None: not found in
    ``head``). A placeholder size promises nothing.
    """
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, rate, block_align = 12, 0, 0
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 24 <= len(head):
            rate = int.from_bytes(head[pos + 12 : pos + 16], "little")
            block_align = int.from_bytes(head[pos + 20 : pos + 22], "little")
        elif chunk == b"data":
            if not rate or not block_align:
                return None
            present = max(0, size - pos - 8)
            return (present if length in _WAV_UNKNOWN_SIZES else length), present, block_align, rate
        pos += 8 + length + (length & 1)
    return None


def wav_length(name: str, head: bytes, size: int) -> tuple[float, str | None] | None:
    """Seconds a RIFF/WAVE file's ``data`` header promises, and why the file is truncated (None: it is whole).

    ``head``: the file's first :data:`HEADER_BYTES`; ``size``: its size. None: no WAV header in ``head``.
    A file holding fewer bytes than its ``data`` header promises was cut short (a bad copy, a full disk);
    libsndfile then quietly reports only what is there, so only this size arithmetic can tell.
    """
    data = _wav_data(head, size)
    if data is None:
        return None
    promised, present, block_align, rate = data
    promised_s = promised // block_align / rate
    return promised_s, (truncation(name, promised_s, present // block_align / rate) if present < promised else None)


#: The longest Ogg page (27-byte header, 255 lacing values of 255 bytes each): the last page starts within it.
OGG_TAIL_BYTES = 27 + 255 + 255 * 255


def ends_of(source: int | bytes) -> tuple[bytes, int, bytes]:
    """The first :data:`HEADER_BYTES`, the size and, for Ogg, the last :data:`OGG_TAIL_BYTES` of a file.

    ``source``: an open file descriptor (read with ``pread``, its offset untouched) or the file's bytes.
    """
    if isinstance(source, bytes):
        head, size = source[:HEADER_BYTES], len(source)
        return head, size, source[-OGG_TAIL_BYTES:] if head[:4] == b"OggS" else b""
    head, size = os.pread(source, HEADER_BYTES, 0), os.fstat(source).st_size
    return head, size, os.pread(source, OGG_TAIL_BYTES, max(0, size - OGG_TAIL_BYTES)) if head[:4] == b"OggS" else b""


def read_ends(path: str) -> tuple[bytes, int, bytes]:
    """:func:`ends_of` a path, from one open (os-level calls: a Python file object costs more than the check).

    :class:`UnusableAudioError` for a path that cannot be opened or is no regular file (a FIFO would block).
    """
    fd = open_regular(path, UnusableAudioError)
    try:
        return ends_of(fd)
    finally:
        os.close(fd)


def ogg_cut_short(tail: bytes) -> bool:
    """Whether an Ogg file whose last (up to :data:`OGG_TAIL_BYTES`) bytes are ``tail`` was cut short.

    An Ogg stream's last page carries the end-of-stream flag. A file cut short ends inside a page, or
    after one that does not close its stream; libsndfile and ffmpeg then take its length from the last
    whole page and decode what is there without an error. Bytes after the last whole page that are not
    a page (a tag some tool appended) leave the question open: not called cut short.
    """
    pos = tail.rfind(b"OggS")
    while pos >= 0 and (pos + 27 > len(tail) or tail[pos + 4] != 0):  # a page header: version 0
        pos = tail.rfind(b"OggS", 0, pos)
    if pos < 0:
        return False
    lacing = pos + 27 + tail[pos + 26]
    end = lacing + sum(tail[pos + 27 : lacing]) if lacing <= len(tail) else len(tail) + 1
    return end > len(tail) or (end == len(tail) and not tail[pos + 5] & 0x04)


def ogg_truncation(name: str, present_s: float | None) -> str:
    """The wording of an Ogg file cut short (its header holds no length to compare with)."""
    holds = f", the file holds {present_s:.3f} s" if present_s is not None else ""
    return f"{name}: truncated: its Ogg stream breaks off before its last page{holds}"


def truncation(path: str, promised_s: float, present_s: float) -> str:
    """The one wording of a file that holds less than its header promises."""
    return f"{path}: truncated: its header promises {promised_s:.3f} s of audio, the file holds {present_s:.3f} s"


def _flac_length(head: bytes) -> float | None:
    """Seconds of a FLAC file from its STREAMINFO block (None: total length not recorded)."""
    if head[:4] != b"fLaC" or len(head) < 42 or head[4] & 0x7F != 0:
        return None
    packed = int.from_bytes(head[18:26], "big")
    rate, total = packed >> 44, packed & ((1 << 36) - 1)
    return total / rate if rate and total else None


def _ffmpeg_length(path: str) -> float | None:
    """Seconds of any container ffmpeg opens, from its header (``ffmpeg -i`` without an output decodes nothing)."""
    out = subprocess.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-i", path], capture_output=True)
    if b"Audio:" not in out.stderr:
        detail = out.stderr.decode(errors="replace").strip().splitlines()
        raise UnusableAudioError(f"{path}: no audio stream ffmpeg can read ({detail[-1] if detail else 'no output'})")
    return header_duration(out.stderr.decode(errors="replace"))


def audio_length(path: str) -> float | None:
    """The length of an audio file in seconds, read from its header, never by decoding it.

    WAV and FLAC headers are parsed directly (a few microseconds; opening the file with libsndfile
    costs ~50x more, which at 160k files is minutes); other formats ask libsndfile, containers it cannot
    open ask ffmpeg. ``None``: the file does not record its length. Raises :class:`UnusableAudioError`
    for an empty file, one that no reader accepts, a WAV file holding fewer bytes than its header
    promises (file size arithmetic) and an Ogg file whose last page is missing (:func:`ogg_cut_short`).
    """
    try:
        head, size, tail = read_ends(path)
    except OSError as err:
        raise UnusableAudioError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not head:
        raise UnusableAudioError(f"{path}: the file is empty")
    ext = path.rpartition(".")[2].lower()
    if ext == "wav" and (wav := wav_length(path, head, size)) is not None:
        if wav[1]:
            raise UnusableAudioError(wav[1])
        return wav[0]
    if ext == "flac" and (length := _flac_length(head)) is not None:
        return length
    if tail and ogg_cut_short(tail):
        raise UnusableAudioError(ogg_truncation(path, None))
    if ext not in FFMPEG_ONLY_EXTENSIONS:
        import soundfile as sf

        try:
            info = sf.info(path)
            return info.frames / info.samplerate if 0 < info.frames < 1 << 62 else None
        except (sf.LibsndfileError, RuntimeError) as err:
            libsndfile_error = str(err)
        try:
            return _ffmpeg_length(path)
        except UnusableAudioError:
            raise UnusableAudioError(f"{path}: not readable audio ({libsndfile_error})") from None
    return _ffmpeg_length(path)


# --- cutting a window out of a longer file -------------------------------------------------------


def is_cut_of(record: ClipRecord, source: str, identity: FileIdentity) -> bool:
    """Whether ``record`` is a cut of exactly this ``source`` file as it is now (its :class:`FileIdentity`).

    The same facts the prepared copies are keyed on (:class:`.resolution.ResolutionState`): a file
    rewritten in place, or another file moved to the same name, changes at least one of them. A record
    written before the identity had four fields (``source_size``/``source_mtime_ns``) is no cut of
    anything now: the window is cut again, never reused on the old, weaker evidence.
    """
    extra = record.extra
    return extra.get("cut_from") == source and extra.get("source_identity") == list(identity)


def cut_window(source: str, clip: Clip, offset_s: float, cache_dir: Path,
               identity: FileIdentity | None = None) -> Path:
    """Write ``[offset_s, offset_s + clip duration)`` of ``source`` into the clip cache as ``clip``; its path.

    Stored exactly as a download of ``clip`` would be (FLAC plus its record, audio renamed into place
    before the record is written), so ``fetch`` and ``status`` count it as present. A record already
    there (a cut of another file, or of this file before it changed) is removed before the new audio
    is renamed into place, so no record ever describes audio it was not written for. The record names
    the source with its :class:`FileIdentity` (``identity``, taken before reading it). libsndfile
    formats are cut by frames; containers by ffmpeg. A window the file cannot fill (its header claimed
    more than it holds) is refused with both lengths named.
    """
    import soundfile as sf

    assert clip.duration_s is not None
    identity = identity if identity is not None else FileIdentity.of(source)
    final = audio_path(cache_dir, clip, "flac")
    tmp = final.with_name(f".tmp-{clip.key}-cut-{os.getpid()}.flac")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if source.rpartition(".")[2].lower() in FFMPEG_ONLY_EXTENSIONS:
            cmd = [find_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-ss", f"{offset_s:.6f}",
                   "-t", f"{clip.duration_s:.6f}", "-i", source, "-map", "0:a:0", "-vn", "-c:a", "flac", str(tmp)]
            out = subprocess.run(cmd, capture_output=True)
            if out.returncode != 0:
                raise UnusableAudioError(f"{source}: ffmpeg could not cut the window of clip {clip.key}: "
                                         f"{out.stderr.decode(errors='replace').strip()}")
        else:
            with sf.SoundFile(source) as f:
                f.seek(min(round(offset_s * f.samplerate), f.frames))
                data = f.read(round(clip.duration_s * f.samplerate), dtype="float32", always_2d=True)
                subtype = "PCM_16" if f.subtype in ("PCM_16", "PCM_S8", "PCM_U8", "ULAW", "ALAW") else "PCM_24"
                rate = f.samplerate
            sf.write(tmp, data, rate, format="FLAC", subtype=subtype)
        info = sf.info(str(tmp))
        if info.frames < (clip.duration_s - WINDOW_TOLERANCE_S) * info.samplerate:
            raise UnusableAudioError(
                f"{source}: its header says it holds the {clip.duration_s:g} s window of clip {clip.key} from "
                f"{offset_s:g} s, but only {info.frames / info.samplerate:.3f} s of it could be read (truncated file)",
                reason="audio file does not hold the clip's window")
        record_path(cache_dir, clip).unlink(missing_ok=True)
        os.replace(tmp, final)
        write_record(cache_dir, clip, ClipRecord(
            file=final.name, size=final.stat().st_size, format="flac", sample_rate=info.samplerate,
            channels=info.channels, frames=info.frames, requested_sample_rate=None,
            url=Path(source).as_uri(), fetched_at=time.time(),
            extra={"cut_from": source, "offset_s": offset_s, "source_identity": list(identity)}))
    except OSError as err:
        raise UnusableAudioError(f"{source}: holds more than clip {clip.key}, and its window could not be "
                                 f"written to the clip cache {cache_dir}: {err.strerror or err}",
                                 reason="window could not be cut into the clip cache") from None
    except sf.LibsndfileError as err:
        raise UnusableAudioError(f"{source}: cannot cut the window of clip {clip.key}: {err}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


class AudioResolver:
    """Clip -> local audio path: ``audio_dirs`` in the order given, then the clip cache.

    It remembers what it looked at (:attr:`files`, :attr:`missing`), so that whoever prepared data
    from its answers can later tell, with one ``stat`` per file, whether the answers still hold.
    """

    def __init__(self, audio_dirs: Sequence[PathLike] = (), cache_dir: PathLike | None = None) -> None:
        self.index = AudioIndex(audio_dirs)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        #: Every file an answer depended on (found, cut from, or found unusable), in first-seen order.
        self.files: dict[str, None] = {}
        #: Clips with times that had no audio anywhere (they may arrive in the cache later).
        self.missing: dict[Clip, None] = {}

    def resolve(self, clip: Clip) -> Path | None:
        """The clip's audio file, or ``None``; :class:`UnusableAudioError` for a local file that cannot serve."""
        entry = self.index.find_entry(clip)
        if entry is not None:
            self.files[entry.path] = None
            return self._checked(entry, clip)
        if self.cache_dir is not None and clip.start_s is not None:
            found = cached_clip(self.cache_dir, clip)
            if found is not None:
                self.files[str(found)] = None
                return found
            self.missing[clip] = None
        return None

    def _checked(self, entry: _Entry, clip: Clip) -> Path:
        """``entry``'s file if it is the clip; its window cut into the cache if it holds more.

        A cut in the cache is reused only while it is a cut of this very file, unchanged since
        (:func:`is_cut_of`); a clip the cache holds from a download is used as it is.
        """
        length = audio_length(entry.path)
        duration = clip.duration_s
        if length is None or duration is None:
            return Path(entry.path)
        if entry.start is not None and length + WINDOW_TOLERANCE_S < duration:
            # A windowed name starts at the clip's start: holding less than the clip, it lacks the window's end.
            raise UnusableAudioError(
                f"{entry.path}: holds {length:.2f} s, less than the {duration:g} s clip {clip.key} its name "
                f"says it starts, so it lacks the end of the window [{clip.start_s:g} s, {clip.end_s:g} s)",
                reason="audio file does not hold the clip's window")
        if length <= duration + LONGER_THAN_CLIP_S:
            return Path(entry.path)
        assert clip.start_s is not None
        # A bare name holding more than the clip is the whole video; a windowed name starts at the clip.
        offset = clip.start_s if entry.start is None else 0.0
        if offset + duration > length + WINDOW_TOLERANCE_S:
            raise UnusableAudioError(
                f"{entry.path}: holds {length:.2f} s, more than the {duration:g} s clip {clip.key} but not its "
                f"window [{clip.start_s:g} s, {clip.end_s:g} s) of the video, which needs {offset + duration:.2f} s",
                reason="audio file does not hold the clip's window")
        if self.cache_dir is None:
            raise UnusableAudioError(f"{entry.path}: holds {length:.2f} s, more than the {duration:g} s clip "
                                     f"{clip.key}, and there is no clip cache to cut its window into",
                                     reason="window could not be cut into the clip cache")
        try:
            identity = FileIdentity.of(entry.path)
        except OSError as err:
            raise UnusableAudioError(f"{entry.path}: cannot be read ({err.strerror or err})") from None
        found = lookup(self.cache_dir, clip)
        if found is not None and ("cut_from" not in found[0].extra or is_cut_of(found[0], entry.path, identity)):
            cut = Path(found[1])
        else:
            cut = cut_window(entry.path, clip, offset, self.cache_dir, identity)
        self.files[str(cut)] = None
        return cut

    def searched(self) -> str:
        """Where this resolver looks, for messages."""
        folders = ", ".join(map(str, self.index.folders)) or "no audio_dir"
        if self.index.unreadable:
            folders += f" (skipped, not readable: {', '.join(self.index.unreadable)})"
        return f"{folders} and the clip cache {self.cache_dir}"
