"""The public way in that does not depend on the ``load_dataset`` hook: :func:`load` and :func:`prepare`."""

from __future__ import annotations

import json
import os
from typing import Any

import datasets

from .builder import REPORT_FILENAME, AudioDialogues, SplitReport, builder_hash
from .registration import DATASET_NAME


def builder(config: str = "music", **kwargs: Any) -> AudioDialogues:
    """The builder exactly as ``load_dataset("audio_dialogues", config, ...)`` makes it (same cache)."""
    return AudioDialogues(config_name=config, hash=builder_hash(), dataset_name=DATASET_NAME, **kwargs)


def load(
    config: str = "music",
    split: str | None = None,
    *,
    streaming: bool = False,
    download_mode: datasets.DownloadMode | str | None = None,
    **kwargs: Any,
) -> datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict:
    """Load a config like ``load_dataset("audio_dialogues", config, ...)`` would.

    ``kwargs`` are the builder's (``data_dir``, ``data_files``, ``cache_dir``) and the config's
    (see :class:`audio_dialogues.builder.AudioDialoguesConfig`).
    """
    b = builder(config, **kwargs)
    if streaming:
        return b.as_streaming_dataset(split=split)
    b.download_and_prepare(download_mode=download_mode)
    return b.as_dataset(split=split)


def prepare(
    config: str = "music", *, download_mode: datasets.DownloadMode | str | None = None, **kwargs: Any
) -> tuple[datasets.DatasetDict, dict[str, SplitReport]]:
    """Prepare (or reuse from cache) every split of ``config``; also say what was dropped and why."""
    b = builder(config, **kwargs)
    b.download_and_prepare(download_mode=download_mode)
    report = getattr(b, "report", None)
    if report is None:  # served from cache: the report was saved beside the data
        path = os.path.join(b.cache_dir, REPORT_FILENAME)
        with open(path) as f:
            report = {split: SplitReport(**r) for split, r in json.load(f).items()}
    return b.as_dataset(), report
