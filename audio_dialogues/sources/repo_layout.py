"""Where things live in a published repo, shared by the writer (:mod:`.repo_folder`) and the reader (:mod:`.source`)."""

from __future__ import annotations

from ..sources.clips import Clip

#: Parquet shards: ``data/{config}/{split}-NNNNN-of-MMMMM.parquet``.
DATA_DIR = "data"
#: The card's figures.
PLOTS_DIR = "images"


def audio_column(config: str) -> str:
    return "audios" if config == "comparison" else "audio"


def clip_file_name(clip: Clip, suffix: str) -> str:
    """The name an embedded clip travels under: ``<ytid>_<start s>_<end s><suffix>``, as local folders name it."""
    if clip.start_s is None or clip.end_s is None:
        return f"{clip.ytid}{suffix}"
    return f"{clip.ytid}_{clip.start_s:g}_{clip.end_s:g}{suffix}"
