"""Records -> records with their audio files, under a ``missing_audio`` policy: the one place that decides.

The builder (eager and streaming) and chat export both go through :func:`resolve_records`, so a clip
without audio, or with a local file that cannot serve as the clip, is treated and reported the same
way everywhere. Also here: the fingerprint of what a resolution depended on, which lets a prepared
split be reused as long as its files are unchanged, without walking any folder.
"""

from __future__ import annotations

import array
import collections
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..audio.cache import cached_clip
from ..audio.headers import UnusableAudioError
from ..audio.resolver import MISSING_AUDIO_POLICIES, AudioResolver
from ..errors import AudioDialoguesError, UsageError
from ..files import FileIdentity
from ..sources.annotations import Record
from ..sources.clips import Clip

logger = logging.getLogger(__name__)

NO_AUDIO = "no audio found"
NO_AUDIO_NO_TIMES = "no audio found and no clip times (give source metadata to fetch it)"
#: A release record whose clip the source metadata that was given does not place: giving it again won't help.
NO_AUDIO_UNLISTED = ("no audio found and no clip times (the source metadata given has no single row for the clip: "
                     "not listed, or in several segments)")
#: The reasons that mean "no file was found", as opposed to a file that cannot serve.
NO_AUDIO_REASONS = frozenset({NO_AUDIO, NO_AUDIO_NO_TIMES, NO_AUDIO_UNLISTED})


class MissingAudioError(AudioDialoguesError, FileNotFoundError):
    """A clip with no usable audio under ``missing_audio="error"``, or a split where no record has audio."""


@dataclass
class SplitReport:
    """What resolving one split (or one streamed shard) kept and dropped, and why."""

    records: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    missing_clips: int = 0
    #: Release records naming a clip that the source metadata given does not list (no window, no labels).
    unlisted: int = 0
    #: Where the first of them is (``file[index]``), to look at.
    first_unlisted: str = ""
    #: Where audio was looked for, set when no record has any: the message of an empty split names it.
    searched: str = ""

    @property
    def without_audio(self) -> bool:
        """Records, but none kept: every one was dropped for want of usable audio (the split is empty)."""
        return self.records > 0 and self.kept == 0

    def no_audio_message(self, where: str) -> str:
        """Why ``where`` (``config/split``) is empty; :data:`NO_AUDIO_ADVICE` says what would fill it."""
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.dropped.items())
        return (f"{where}: no audio for any of its {self.records} records ({reasons}); searched "
                f"{self.searched or 'the audio folders and the clip cache'}")


NO_AUDIO_ADVICE = ("Pass audio_dir, fetch the clips (download_audio=True or `audio-dialogues fetch`), or use "
                   "missing_audio='keep' for text only")


def describe_clip(clip: Clip) -> str:
    return f"clip {clip.ytid}" + (f" [{clip.start_s:g}s, {clip.end_s:g}s)" if clip.has_times else " (times unknown)")


def resolve_records(
    records: Iterable[Record],
    resolver: AudioResolver | Callable[[Clip], Path | None],
    policy: str,
    report: SplitReport,
    fetch_failures: dict[str, str] | None = None,
) -> Iterator[tuple[Record, list[Path | None]]]:
    """Each record with the audio file of each of its clips, after the ``missing_audio`` policy.

    ``drop`` leaves out a record with a clip without usable audio (counted by reason in ``report``),
    ``error`` raises :class:`MissingAudioError` naming the record, the clip and why, ``keep`` yields
    ``None`` for that clip. Lazy: one record at a time, so a stream or an export never waits for all.
    ``fetch_failures`` (clip key -> why a download just failed) names the reason of a clip still missing.
    """
    if policy not in MISSING_AUDIO_POLICIES:
        raise UsageError(f"unknown missing_audio {policy!r}; expected one of {', '.join(MISSING_AUDIO_POLICIES)}")
    resolve = resolver.resolve if isinstance(resolver, AudioResolver) else resolver
    searched = resolver.searched() if isinstance(resolver, AudioResolver) else "the given resolver"
    dropped: collections.Counter[str] = collections.Counter(report.dropped)
    try:
        for record in records:
            report.records += 1
            paths: list[Path | None] = []
            problem: tuple[Clip, str, str] | None = None  # first clip without audio: (clip, reason, detail)
            for clip in record.clips:
                try:
                    path = resolve(clip)
                except UnusableAudioError as err:
                    path = None
                    problem = problem or (clip, err.reason, str(err))
                else:
                    if path is None:
                        reason = (fetch_failures or {}).get(clip.key) or (
                            NO_AUDIO if clip.has_times
                            else NO_AUDIO_UNLISTED if clip.ytid in record.unlisted else NO_AUDIO_NO_TIMES)
                        problem = problem or (clip, reason, f"searched {searched}")
                paths.append(path)
            if problem is not None:
                report.missing_clips += sum(p is None for p in paths)
                clip, reason, detail = problem
                if policy == "error":
                    what = "no audio" if reason in NO_AUDIO_REASONS else reason
                    raise MissingAudioError(f"{record.origin or record.id}: {what} for {describe_clip(clip)} "
                                            f"(key {clip.key}) of dialogue {record.id!r}: {detail}")
                if policy == "drop":
                    dropped[reason] += 1
                    continue
            report.kept += 1
            yield record, paths
    finally:
        report.dropped = dict(dropped)


def log_drops(where: str, report: SplitReport) -> None:
    if report.dropped:
        logger.warning("%s: dropped %d of %d records without usable audio (%s)", where, sum(report.dropped.values()),
                       report.records, ", ".join(f"{k}: {v}" for k, v in report.dropped.items()))


@dataclass
class ResolutionState:
    """What a resolution depended on: the files it used, the clips it could not find, the folders it walked.

    :meth:`fingerprint` hashes their current state (each file's and folder's :class:`FileIdentity`: a
    folder's mtime changes when a file is added or removed there; whether each missing clip is in the cache now,
    and whether each subfolder that could not be listed can be now: a permission change leaves mtimes be).
    Equal fingerprints mean resolving again would give the same answer, at the cost of one ``stat`` per
    file instead of reading every record and walking every folder.
    """

    files: list[str]
    missing: list[tuple[str, float, float]]
    dirs: list[str]
    cache_dir: str | None
    unreadable: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, resolver: AudioResolver) -> ResolutionState:
        return cls(list(resolver.files), [(c.ytid, c.start_s, c.end_s) for c in resolver.missing],  # type: ignore[misc]
                   list(resolver.index.dirs), None if resolver.cache_dir is None else str(resolver.cache_dir),
                   list(resolver.index.unreadable))

    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=8)
        _stat_into(digest, self.files)
        _stat_into(digest, self.dirs)
        if self.cache_dir is not None:
            present = bytes(cached_clip(self.cache_dir, Clip(*m)) is not None for m in self.missing)
            digest.update(present)
        digest.update(bytes(_listable(d) for d in self.unreadable))
        return digest.hexdigest()

    def to_json(self) -> dict:
        return {"files": self.files, "missing": self.missing, "dirs": self.dirs, "cache_dir": self.cache_dir,
                "unreadable": self.unreadable}

    @classmethod
    def from_json(cls, data: dict) -> ResolutionState:
        return cls(list(data["files"]), [tuple(m) for m in data["missing"]], list(data["dirs"]), data["cache_dir"],
                   list(data.get("unreadable", [])))


def _listable(folder: str) -> bool:
    """Whether ``folder`` can be listed now (opening it for reading is enough; nothing is read)."""
    try:
        os.close(os.open(folder, os.O_RDONLY | os.O_DIRECTORY))
    except OSError:
        return False
    return True


def _stat_into(digest: hashlib.blake2b, paths: Sequence[str]) -> None:
    """Hash the paths, then each one's :class:`FileIdentity` (-1s when absent) as packed integers: one ``stat`` each."""
    digest.update("\0".join(paths).encode())
    identity = FileIdentity.of
    facts = array.array("q")
    extend = facts.extend
    for path in paths:
        try:
            extend(identity(path))
        except OSError:
            extend(_ABSENT)
    digest.update(facts.tobytes())


_ABSENT = (-1,) * len(FileIdentity._fields)
