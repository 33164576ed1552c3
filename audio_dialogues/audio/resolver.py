"""Finding the audio of a clip on disk: the user's own copies first, the clip cache last.

Which files may hold a clip comes from the folder index (:mod:`.index`, which lists the naming schemes it
recognises); how long a file is, from its header (:mod:`.headers`).

A local file is checked before it is used (:meth:`AudioResolver.resolve`): its header says how long it
is, so a file that cannot be read is reported with its clip instead of failing later inside a decoder,
and a file that holds more than the clip (a whole video, or a ``<ytid>_<start>_<end>`` file longer than
its name says) is cut to the clip's window once, into the clip cache, exactly where a download of that
clip would go. Every consumer (both decoders, chat export, the Hub) then sees the clip itself.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ..files import FileIdentity
from ..sources.clips import Clip
from .cache import ClipRecord, audio_path, cached_clip, lookup, record_path, write_record
from .ffmpeg import FFMPEG_ONLY_EXTENSIONS, find_ffmpeg
from .headers import WINDOW_TOLERANCE_S, UnusableAudioError, audio_length
from .index import AudioIndex, IndexEntry

#: What the builder does with a record whose audio is not found (defined here so the CLI need not import datasets).
MISSING_AUDIO_POLICIES = ("drop", "error", "keep")
#: A file this much longer than its clip holds more than the clip (encoder padding is ~0.05 s).
LONGER_THAN_CLIP_S = 0.5

PathLike = str | os.PathLike


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

    def _checked(self, entry: IndexEntry, clip: Clip) -> Path:
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
