"""The `datasets` builder: three configs (``audioset``, ``music``, ``comparison``), train and test each.

Preparing a split reads and validates its annotation files, completes release-shape records from
source metadata, resolves every clip to a local file (``audio_dir`` first, then the clip cache, which
``download_audio=True`` fills) and applies the ``missing_audio`` policy. Only paths are stored; audio
is decoded on access by the feature chosen with ``decoder``.

The cache key covers the *contents* of the annotation and metadata files and the listing of the audio
folders, not just their paths, so an edited file or newly fetched audio is never served from a stale
cache.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from .. import __version__
from ..fetch.cache import resolve_cache_dir
from ..files import atomic_write
from ..sources.annotations import (
    CONFIGS,
    AnnotationError,
    Record,
    gc_paused,
    read_split,
    release_folders,
    split_files,
)
from ..sources.clips import Clip
from ..sources.metadata import PathOrUrl, is_url, metadata_sources, open_source_metadata
from .cards import CARDS, HOMEPAGE, LICENSE
from .decoding import audio_feature
from .local_audio import AudioResolver, listing_fingerprint
from .options import ConfigError, check_options, is_paths

logger = logging.getLogger(__name__)

REPORT_FILENAME = "audio_dialogues_report.json"
_VERSION = datasets.Version("1.0.0")
_BATCH_SIZE = 1_000
_List = getattr(datasets, "List", None) or (lambda feature: [feature])  # datasets < 4: a list literal


class MissingAudioError(FileNotFoundError):
    """A clip with no audio under ``missing_audio="error"``."""


@dataclass
class AudioDialoguesConfig(datasets.BuilderConfig):
    """Where annotations, metadata and audio are, and how to decode.

    Args:
        audio_dir: folder(s) with local audio, searched in order before the clip cache.
        audio_cache_dir: the clip cache (default: :func:`audio_dialogues.fetch.cache.default_cache_dir`).
        sampling_rate: target rate of decoded audio; ``None`` or ``"native"`` keeps each file's own rate.
        decoder: ``soundfile`` (default, ~4x faster), ``torchcodec`` (datasets' own Audio), ``none`` (paths).
        missing_audio: ``drop`` (default; counted and logged), ``error``, or ``keep`` (audio None).
        strong_labels, musiccaps_csv, ontology: source metadata, local paths or URLs.
        download_metadata: fetch metadata that is not given from its official URLs.
        download_audio: fetch clips that have no local audio into the clip cache while preparing.
        fetch_options: keyword arguments of :class:`audio_dialogues.fetching.FetchOptions`.
        num_shards: shards per split, for DataLoader workers and ``split_dataset_by_node``.
    """

    audio_dir: PathOrUrl | list[PathOrUrl] | None = None
    audio_cache_dir: PathOrUrl | None = None
    sampling_rate: int | str = 16_000
    decoder: str = "soundfile"
    missing_audio: str = "drop"
    strong_labels: PathOrUrl | list[PathOrUrl] | None = None
    musiccaps_csv: PathOrUrl | None = None
    ontology: PathOrUrl | None = None
    download_metadata: bool = False
    download_audio: bool = False
    fetch_options: dict[str, Any] = field(default_factory=dict)
    num_shards: int = 8

    def validate(self) -> None:
        """Check every option, so a wrong value is named here and not met as a traceback deep inside.

        datasets sets overrides after construction, so this cannot be ``__post_init__``; it runs before
        anything uses the options (:meth:`create_config_id`) and again when the builder reads its info.
        """
        if self.name not in CONFIGS:
            raise ConfigError(f"unknown config {self.name!r}; expected one of {', '.join(CONFIGS)}")
        check_options({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if self.sampling_rate is None:
            self.sampling_rate = "native"

    @property
    def target_rate(self) -> int | None:
        return None if self.sampling_rate == "native" else int(self.sampling_rate)

    @property
    def audio_dirs(self) -> list[Path]:
        """``audio_dir`` in order, then the folders of the authors' release files (their audio lies beside them)."""
        dirs = self.audio_dir if isinstance(self.audio_dir, (list, tuple)) else [self.audio_dir]
        given = [Path(d) for d in dirs if d is not None]
        try:
            beside = release_folders(self.annotation_files())
        except AnnotationError:
            beside = []  # reported with its full message when the splits are generated
        return list(dict.fromkeys(given + beside))

    @property
    def cache_dir(self) -> Path:
        return resolve_cache_dir(self.audio_cache_dir)

    def metadata_sources(self) -> dict[str, list[str]]:
        return metadata_sources(
            self.name,
            strong_labels=self.strong_labels,
            musiccaps_csv=self.musiccaps_csv,
            ontology=self.ontology,
            download_metadata=self.download_metadata,
        )

    def annotation_files(self) -> dict[str, list[Path]]:
        data_files = {split: list(files) for split, files in self.data_files.items()} if self.data_files else None
        return split_files(self.name, data_dir=self.data_dir, data_files=data_files)

    def create_config_id(self, config_kwargs: dict, custom_features: Any = None) -> str:
        """The datasets config id plus a digest of what the inputs *contain* (see module docstring)."""
        self.validate()
        return f"{super().create_config_id(config_kwargs, custom_features)}-{self.content_fingerprint()}"

    def content_fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=8)
        try:
            annotation_files = [p for files in self.annotation_files().values() for p in files]
        except AnnotationError:
            annotation_files = []  # reported with its full message when the splits are generated
        local_metadata = [Path(f) for files in self.metadata_sources().values() for f in files if not is_url(f)]
        for path in annotation_files + local_metadata:
            digest.update(str(path).encode())
            if path.is_file():
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
        for folder in self.audio_dirs + [self.cache_dir]:
            digest.update(str(folder).encode())
            if folder.is_dir():
                digest.update(listing_fingerprint(folder).encode())
        return digest.hexdigest()


@dataclass
class SplitReport:
    """What preparing one split kept and dropped, and why."""

    records: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    missing_clips: int = 0
    #: Release records naming a clip that the source metadata given does not list (no window, no labels).
    unlisted: int = 0
    #: Where the first of them is (``file[index]``), to look at.
    first_unlisted: str = ""


def _features(config: AudioDialoguesConfig) -> datasets.Features:
    audio = audio_feature(config.decoder, config.target_rate)
    clip = {"ytid": datasets.Value("string"), "start_s": datasets.Value("float64"), "end_s": datasets.Value("float64")}
    turns = _List({"user": datasets.Value("string"), "assistant": datasets.Value("string")})
    common = {"id": datasets.Value("string")}
    if config.name == "comparison":
        return datasets.Features({**common, "audios": _List(audio), "clips": _List(clip), "turns": turns})
    features = {**common, "audio": audio, "clip": clip, "turns": turns}
    if config.name == "audioset":
        event = {"label": datasets.Value("string"), "start_s": datasets.Value("float64"),
                 "end_s": datasets.Value("float64")}
        features["sound_events"] = _List(event)
    else:
        features["caption"] = datasets.Value("string")
        features["aspects"] = _List(datasets.Value("string"))
    return datasets.Features(features)


def _example(config: str, record: Record, paths: list[Path | None]) -> dict:
    audios = [{"path": str(p), "bytes": None} if p is not None else None for p in paths]
    example: dict[str, Any] = {"id": record.id, "turns": [t.to_dict() for t in record.turns]}
    if config == "comparison":
        example["audios"] = audios
        example["clips"] = [c.to_dict() for c in record.clips]
        return example
    example["audio"] = audios[0]
    example["clip"] = record.clips[0].to_dict()
    if config == "audioset":
        example["sound_events"] = record.meta.get("sound_events", [])
    else:
        example["caption"] = record.meta.get("caption", "")
        example["aspects"] = record.meta.get("aspects", [])
    return example


class AudioDialogues(datasets.ArrowBasedBuilder):
    """Audio Dialogues (arXiv 2404.07616): dialogues about sounds and music, with their audio."""

    VERSION = _VERSION
    BUILDER_CONFIG_CLASS = AudioDialoguesConfig
    BUILDER_CONFIGS = [AudioDialoguesConfig(name=name, version=_VERSION, description=CARDS[name].info_description)
                       for name in CONFIGS]
    DEFAULT_CONFIG_NAME = "music"
    config: AudioDialoguesConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _check_builder_kwargs(kwargs)
        # datasets drops config overrides whose value is None, which would turn "native rate" into 16 kHz.
        if "sampling_rate" in kwargs and kwargs["sampling_rate"] is None:
            kwargs["sampling_rate"] = "native"
        super().__init__(*args, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        self.config.validate()
        card = CARDS[self.config.name]
        return datasets.DatasetInfo(
            description=card.info_description,
            features=_features(self.config),
            homepage=HOMEPAGE,
            license=LICENSE,
            citation=card.citation,
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        config = self.config
        files = config.annotation_files()
        # A streaming download manager only hands URLs back; metadata must be read whole, so fetch it for real.
        downloader = datasets.DownloadManager(
            dataset_name=self.dataset_name, download_config=dl_manager.download_config
        )
        metadata = open_source_metadata(config.metadata_sources(), download=downloader.download)
        resolver = AudioResolver(config.audio_dirs, config.cache_dir)
        self.report: dict[str, SplitReport] = {}
        generators = []
        for split, paths in files.items():
            records = read_split(config.name, split, data_files={split: paths}, metadata=metadata)
            if config.download_audio:
                self._fetch_missing(records, resolver)
            with gc_paused():
                resolved, self.report[split] = self._resolve(split, records, resolver)
            del records
            n = max(1, min(config.num_shards, len(resolved)))
            bounds = [len(resolved) * i // n for i in range(n + 1)]
            shards = []
            for i in reversed(range(n)):  # from the end, freeing each shard's records once it is Arrow
                shards.insert(0, self._table(resolved[bounds[i] :]))
                del resolved[bounds[i] :]
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"shards": shards}))
        self._save_report()
        return generators

    def _fetch_missing(self, records: list[Record], resolver: AudioResolver) -> None:
        from ..fetch import FetchOptions, fetch_clips

        wanted = {c for r in records for c in r.clips if c.has_times and resolver.resolve(c) is None}
        if wanted:
            logger.info("fetching %d clips into %s", len(wanted), resolver.cache_dir)
            # Fetch at the rate the dataset decodes to (native stays native) unless fetch_options say otherwise.
            options = FetchOptions(**{"sample_rate": self.config.target_rate, **self.config.fetch_options})
            fetch_clips(sorted(wanted, key=lambda c: c.key), cache_dir=resolver.cache_dir, options=options)

    def _resolve(
        self, split: str, records: list[Record], resolver: AudioResolver
    ) -> tuple[list[tuple[Record, list[Path | None]]], SplitReport]:
        """Each record with the audio path of each of its clips, after the ``missing_audio`` policy."""
        policy = self.config.missing_audio
        report = SplitReport(records=len(records))
        unlisted = [r for r in records if r.unlisted]
        if unlisted:
            report.unlisted, report.first_unlisted = len(unlisted), unlisted[0].origin
            logger.warning("%s/%s: %d release records name clips the source metadata does not list (first: %s, "
                           "%s)", self.config.name, split, len(unlisted), unlisted[0].origin,
                           ", ".join(unlisted[0].unlisted))
        dropped: collections.Counter[str] = collections.Counter()
        resolved = []
        for record in records:
            paths = [resolver.resolve(c) for c in record.clips]
            missing = [c for c, p in zip(record.clips, paths, strict=True) if p is None]
            if missing:
                report.missing_clips += len(missing)
                if policy == "error":
                    raise MissingAudioError(f"{record.origin}: no audio for {_describe(missing[0])} "
                                            f"(searched {self._searched(resolver)})")
                if policy == "drop":
                    dropped[_missing_reason(missing)] += 1
                    continue
            resolved.append((record, paths))
        report.kept = len(resolved)
        report.dropped = dict(dropped)
        if records and not resolved:
            raise MissingAudioError(
                f"{self.config.name}/{split}: no audio for any of its {len(records)} records "
                f"({', '.join(dropped)}); searched {self._searched(resolver)}. Pass audio_dir, fetch the clips "
                "(download_audio=True or `audio-dialogues fetch`), or use missing_audio='keep' for text only"
            )
        if dropped:
            logger.warning("%s/%s: dropped %d of %d records without audio (%s)", self.config.name, split,
                           sum(dropped.values()), len(records), ", ".join(f"{k}: {v}" for k, v in dropped.items()))
        return resolved, report

    @staticmethod
    def _searched(resolver: AudioResolver) -> str:
        folders = ", ".join(map(str, resolver.index.folders)) or "no audio_dir"
        return f"{folders} and the clip cache {resolver.cache_dir}"

    def _save_report(self) -> None:
        """Keep the report next to the prepared data, so a cached load can still say what was dropped."""
        output_dir = getattr(self, "_output_dir", None)
        if output_dir and os.path.isdir(output_dir):
            with atomic_write(os.path.join(output_dir, REPORT_FILENAME)) as f:
                json.dump({split: vars(r) for split, r in self.report.items()}, f, indent=1)

    def _table(self, resolved: list[tuple[Record, list[Path | None]]]) -> pa.Table:
        """One shard as an Arrow table, built a batch of example dicts at a time.

        Shards travel inside the generator's arguments, which a streaming dataset pickles into every
        DataLoader worker: as Arrow buffers that costs milliseconds, where the same rows as Python objects
        cost seconds and several times the memory per worker.
        """
        schema = self.info.features.arrow_schema
        batches = [
            pa.Table.from_pylist([_example(self.config.name, r, p) for r, p in resolved[i : i + _BATCH_SIZE]],
                                 schema=schema)
            for i in range(0, len(resolved), _BATCH_SIZE)
        ]
        return pa.concat_tables(batches) if batches else schema.empty_table()

    def _generate_tables(self, shards: list[pa.Table]) -> Iterator[tuple[tuple[int, int], pa.Table]]:
        """The shards' rows in batches; writing Arrow directly skips datasets' per-example encoding."""
        for shard_index, shard in enumerate(shards):
            for start in range(0, shard.num_rows, _BATCH_SIZE):
                yield (shard_index, start), shard.slice(start, _BATCH_SIZE)


def _check_builder_kwargs(kwargs: dict[str, Any]) -> None:
    """Name a misspelt option, and check the options datasets consumes before the config exists."""
    known = set(inspect.signature(datasets.DatasetBuilder.__init__).parameters) - {"self", "config_kwargs"}
    options = {f.name for f in dataclasses.fields(AudioDialoguesConfig)}
    unknown = [k for k in kwargs if k not in known | options]
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; the options are: {', '.join(sorted(options - {'name'}))}")
    check_options({k: kwargs[k] for k in ("data_dir",) if k in kwargs})
    data_files = kwargs.get("data_files")
    if data_files is not None and not isinstance(data_files, datasets.data_files.DataFilesDict):
        splits = data_files if isinstance(data_files, dict) else {"train": data_files}
        for split, files in splits.items():
            if not (isinstance(split, str) and is_paths(files)):
                raise ConfigError(f"option data_files={data_files!r:.80} is not valid: data_files takes a path, a "
                                  "list of paths, or a dict of split name -> path(s), e.g. {'train': 'train.jsonl'}")


def _missing_reason(missing: list[Clip]) -> str:
    if any(not c.has_times for c in missing):
        return "no audio found and no clip times (give source metadata to fetch it)"
    return "no audio found"


def _describe(clip: Clip) -> str:
    return f"clip {clip.ytid}" + (f" [{clip.start_s:g}s, {clip.end_s:g}s)" if clip.has_times else " (times unknown)")


@functools.cache
def builder_hash() -> str:
    """Identifies this package's code in cache paths, so an upgrade never reuses old prepared data.

    Every module of the package counts, not a hand-kept list: what a split holds depends on clip
    parsing, the cache layout and fetching as much as on the builder itself.
    """
    digest = hashlib.blake2b(__version__.encode(), digest_size=8)
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
