"""The public way in that does not depend on the ``load_dataset`` hook: :func:`load`, :func:`prepare`, :func:`clean`."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from ..files import remove_owned
from .builder import IMPORT_HINT, REPORT_FILENAME, RESOLUTION_FILENAME, AudioDialogues, SplitReport, builder_hash
from .options import ConfigError
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
    config: str = "music",
    split: str | None = None,
    *,
    download_mode: datasets.DownloadMode | str | None = None,
    **kwargs: Any,
) -> tuple[datasets.DatasetDict, dict[str, SplitReport]]:
    """Prepare (or reuse from cache) every split of ``config``; also say what was dropped and why.

    Every split is prepared, as datasets does; a split where no record has audio is prepared empty, its
    report saying why. ``split`` names the one split wanted (returned alone, with its report): then that
    split being empty raises :class:`MissingAudioError`, as it does when no split has audio.
    """
    b = builder(config, **kwargs)
    b.download_and_prepare(download_mode=download_mode)
    report = b.split_reports()
    if split is None:
        return b.as_dataset(), report
    if split not in report:
        raise ConfigError(f"{config}: the annotations given have no {split!r} split; they have "
                          f"{', '.join(sorted(report)) or 'none'}")
    return datasets.DatasetDict({split: b.as_dataset(split=split)}), {split: report[split]}


#: ``<options id>-<input digest>-<resolution digest>``: the config id of a prepared copy (see the builder).
_CONFIG_ID_RE = re.compile(r"^(?P<options>.+)-[0-9a-f]{16}-[0-9a-f]{16}$")
#: The code hash a copy's folder is named after.
_CODE_RE = re.compile(r"^[0-9a-f]{16}$")
#: The files of a prepared copy: datasets' (its shards, info, license and map caches) and the builder's reports.
_COPY_FILE_RE = re.compile(
    rf"^({re.escape(DATASET_NAME)}-[^/]+\.arrow|cache-[^/]+\.arrow|dataset_info\.json|LICENSE|"
    rf"{re.escape(REPORT_FILENAME)}|{re.escape(RESOLUTION_FILENAME)})$")


@dataclass(frozen=True)
class PreparedCopy:
    """One prepared copy in the datasets cache: ``<cache>/audio_dialogues/<config id>/<version>/<code hash>``."""

    path: Path
    options: str
    code: str
    prepared_at: float
    size_bytes: int


def prepared_copies(cache_dir: str | os.PathLike | None = None) -> list[PreparedCopy]:
    """Every prepared copy of this dataset in a datasets cache (default: datasets' own), oldest first."""
    root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser() / DATASET_NAME
    copies = []
    for info in root.glob("*/*/*/dataset_info.json"):
        folder = info.parent
        if folder.parent.parent.name == IMPORT_HINT or folder.name.endswith(".incomplete"):
            continue  # not a copy: the hint for load_dataset without the import, or a copy being prepared
        match = _CONFIG_ID_RE.match(folder.parent.parent.name)
        if not match or not _CODE_RE.match(folder.name):
            continue  # not named as this package names its copies: someone else's folder, never counted or cleaned
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        copies.append(PreparedCopy(folder, match["options"], folder.name, info.stat().st_mtime, size))
    return sorted(copies, key=lambda c: c.prepared_at)


def superseded_copies(cache_dir: str | os.PathLike | None = None) -> list[PreparedCopy]:
    """Prepared copies nothing will load again: made by other code, or older than a copy with the same options.

    A copy is keyed on its options, its inputs' contents and the files they resolved to; when any of
    these changes a new copy is prepared and the old one is never read again. Per set of options, only
    the newest copy made by this code is kept.
    """
    code = builder_hash()
    copies = prepared_copies(cache_dir)
    newest: dict[str, PreparedCopy] = {}
    for copy in copies:
        if copy.code == code:
            newest[copy.options] = copy
    return [c for c in copies if newest.get(c.options) is not c]


def clean(cache_dir: str | os.PathLike | None = None, *, dry_run: bool = False) -> list[PreparedCopy]:
    """Delete superseded prepared copies (see :func:`superseded_copies`); return what was (or would be) deleted.

    Never deletes a copy another process is preparing (``.incomplete`` folders are not copies), nor the
    newest copy of any set of options, nor any file a copy holds that datasets or the builder did not write
    there (the folder then stays, holding only those).
    """
    stale = superseded_copies(cache_dir)
    if not dry_run:
        for copy in stale:
            remove_owned(copy.path, lambda name: bool(_COPY_FILE_RE.match(name)))
            with contextlib.suppress(OSError):
                os.unlink(f"{copy.path}_builder.lock")
            for parent in (copy.path.parent, copy.path.parent.parent):  # version and config folders, once empty
                with contextlib.suppress(OSError):
                    parent.rmdir()
    return stale
