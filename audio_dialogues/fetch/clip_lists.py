"""The clips a config's annotations name per split, remembered in the clip cache until an input file changes.

``fetch`` and ``status`` need only the distinct clips of a config, yet reading and validating 50,000
records (turns, events, metadata joins) costs seconds: most of a re-run whose clips are all cached.
After one full read, the clip list is stored under ``<cache>/index/`` keyed on the state of every
input file (its path and :class:`~audio_dialogues.files.FileIdentity`) and on this package's version, so an
edited, replaced or touched annotation or metadata file is read and validated again in full. Only
local inputs qualify: with metadata from URLs the files are always read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..audio.cache import resolve_cache_dir
from ..files import FileIdentity, OutputError, atomic_write
from ..sources import records
from ..sources.annotations import AnnotationError, gc_paused, split_files
from ..sources.clips import Clip, ClipError
from ..sources.metadata import PathOrUrl, is_url, metadata_sources

INDEX_DIRNAME = "index"
_FORMAT = 2  # 2: clips per split


def _state_key(config: str, splits: Iterable[str], inputs: Iterable[str | os.PathLike]) -> str | None:
    """A digest of the inputs' identities and states; ``None`` if one is missing (let the full read say so)."""
    from ..version import __version__

    digest = hashlib.blake2b(f"{_FORMAT}\0{__version__}\0{config}\0{','.join(splits)}".encode(), digest_size=16)
    for path in inputs:
        try:
            identity = FileIdentity.of(path)
        except OSError:
            return None
        # the same bytes as before FileIdentity existed: stored lists stay valid
        digest.update("\0".join(map(str, (f"\0{os.path.abspath(path)}", *identity))).encode())
    return digest.hexdigest()


def config_clips(
    config: str,
    split: str,
    *,
    data_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    strong_labels: PathOrUrl | Sequence[PathOrUrl] | None = None,
    musiccaps_csv: PathOrUrl | None = None,
    ontology: PathOrUrl | None = None,
    download_metadata: bool = False,
) -> dict[str, list[Clip]]:
    """The distinct clips of ``config`` per split of ``split`` (``all``: every split with annotations), what
    ``fetch`` and ``status`` work on.

    Remembered in the clip cache (``cache_dir``, default :func:`~.cache.resolve_cache_dir`'s) while the
    annotation and metadata files stay as they are; read in full with metadata from URLs, and when the
    annotation folder is unusable (the full read then says what is wrong with it).
    """
    sources: dict[str, Any] = {"strong_labels": strong_labels, "musiccaps_csv": musiccaps_csv,
                               "ontology": ontology, "download_metadata": download_metadata}

    def read() -> dict[str, list[Clip]]:
        by_split = records.records_by_split(config, [split], data_dir=data_dir, **sources)
        return {name: records.distinct_clips(split_records) for name, split_records in by_split.items()}

    metadata = [f for files in metadata_sources(config, **sources).values() for f in files]
    if download_metadata or any(is_url(str(f)) for f in metadata):
        return read()
    try:
        files = split_files(config, data_dir=data_dir)
    except AnnotationError:
        return read()
    splits = list(files) if split == "all" else [split]
    inputs: list[str | os.PathLike] = [*(p for name in splits for p in files.get(name, [])), *metadata]
    return _remembered(resolve_cache_dir(cache_dir), config, splits, inputs, read)


def _remembered(cache_dir: str | os.PathLike, config: str, splits: Iterable[str],
                inputs: Iterable[str | os.PathLike], read: Callable[[], dict[str, list[Clip]]]
                ) -> dict[str, list[Clip]]:
    """``read()`` (split -> its distinct clips), or what it returned before for these very input files.

    A stored list that cannot be read or does not hold valid clips is ignored (and replaced); one that
    cannot be written is simply not stored.
    """
    splits, inputs = list(splits), list(inputs)
    key = _state_key(config, splits, inputs)
    path = Path(cache_dir) / INDEX_DIRNAME / f"clips-{config}-{key}.json"
    if key is not None:
        try:
            with open(path, "rb") as f, gc_paused():  # 100k+ acyclic clips: no collection pass to rescan them
                return {split: Clip.many(rows) for split, rows in json.load(f).items()}
        except (OSError, ValueError, TypeError, AttributeError, RecursionError, ClipError):
            pass
    clips = read()
    if key is not None:
        try:
            with atomic_write(path) as f:
                json.dump({split: [[c.ytid, c.start_s, c.end_s] for c in split_clips]
                           for split, split_clips in clips.items()}, f, separators=(",", ":"))
        except OutputError:
            return clips  # a read-only cache: the next run reads the annotations again
        for old in path.parent.glob(f"clips-{config}-*.json"):  # lists of earlier states of the inputs
            if old != path:
                old.unlink(missing_ok=True)
    return clips
