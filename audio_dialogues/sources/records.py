"""A config's records as every consumer reads them (prepare aside, which the builder does itself).

``fetch``, ``status``, ``evaluate``, ``export`` and ``push`` all start from the same thing: the validated
records of some splits of a config, completed from the source metadata, the distinct clips they name,
and the folders where their audio may lie. Defined once here, so the command line and Python users
get the same answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from .annotations import Record, read_split, release_folders, split_files
from .clips import Clip
from .metadata import PathOrUrl, metadata_sources, open_source_metadata

PathLike = str | os.PathLike


def records_by_split(
    config: str,
    splits: Sequence[str],
    *,
    data_dir: PathLike,
    strong_labels: PathOrUrl | Sequence[PathOrUrl] | None = None,
    musiccaps_csv: PathOrUrl | None = None,
    ontology: PathOrUrl | None = None,
    download_metadata: bool = False,
) -> dict[str, list[Record]]:
    """The validated records of ``splits`` of ``config`` (``"all"``: every split with annotation files), by split.

    The source metadata is read once for all splits (a strong-label TSV has about a million rows).
    """
    if list(splits) == ["all"]:
        splits = list(split_files(config, data_dir=data_dir))
    metadata = open_source_metadata(metadata_sources(
        config, strong_labels=strong_labels, musiccaps_csv=musiccaps_csv, ontology=ontology,
        download_metadata=download_metadata))
    return {split: read_split(config, split, data_dir=data_dir, metadata=metadata) for split in splits}


def distinct_clips(records: Iterable[Record]) -> list[Clip]:
    """The clips the records name, each once (same video and window), in first-seen order."""
    clips: dict[str, Clip] = {}
    for record in records:
        for clip in record.clips:
            clips.setdefault(clip.key, clip)
    return list(clips.values())


def audio_folders(config: str, data_dir: PathLike | None, audio_dirs: Sequence[PathLike] = ()) -> list[str]:
    """``audio_dirs`` in order, then the folder of an authors' release file: its audio lies beside it.

    The same folders, in the same order, as the builder searches (``AudioDialoguesConfig.audio_dirs``).
    """
    beside = release_folders(split_files(config, data_dir=data_dir)) if data_dir else []
    return list(dict.fromkeys([*map(str, audio_dirs), *map(str, beside)]))



def where_found(config: str, data_dir: PathLike | None,
                audio_dirs: Sequence[PathLike] = ()) -> Callable[[PathLike], str]:
    """A function telling where a local audio file lies, in the words ``status --present-csv`` writes:
    ``audio_dir`` (one of ``audio_dirs``), ``release_folder`` (beside an authors' release file of
    ``data_dir``), else ``cache``. The user's folders are searched first, so they win when folders nest."""
    mine = [os.path.abspath(f) for f in audio_dirs]
    beside = [os.path.abspath(f) for f in release_folders(split_files(config, data_dir=data_dir))] if data_dir else []

    def under(path: str, folders: list[str]) -> bool:
        return any(os.path.commonpath([path, folder]) == folder for folder in folders)

    def where(path: PathLike) -> str:
        path = os.path.abspath(path)
        return "audio_dir" if under(path, mine) else "release_folder" if under(path, beside) else "cache"

    return where
