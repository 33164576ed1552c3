"""The `datasets` builder: three configs (``audioset``, ``music``, ``comparison``), train and test each.

Preparing a split reads and validates its annotation files, completes release-shape records from
source metadata, resolves every clip to a local file (``audio_dir`` first, then the clip cache, which
``download_audio=True`` fills) and applies the ``missing_audio`` policy (:mod:`.resolution`). Only paths
are stored; audio is decoded on access by the feature chosen with ``decoder``.

The cache key. datasets keys a prepared copy on the config's options only, so the config id is
extended with two digests: the *contents* of the annotation and metadata files (each file's digest is
remembered by its size, mtime, ctime and inode, so an unchanged file is not read again), and the state
of exactly the files the split's records resolved to (:class:`.resolution.ResolutionState`, stored
beside the prepared data: one ``stat`` per file, no folder walk). A cached load therefore costs a few
stats per record, and nothing another config's fetch or a journal writes into the shared clip cache
touches it. Prepared copies that newer ones superseded are listed and removed by :func:`.api.clean`.

Streaming never prepares: each shard is a part of the annotation files, read, resolved and decoded
lazily in the DataLoader worker (or rank) that reads it, so the first example comes at once.
"""

from __future__ import annotations

import contextlib
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
from datasets.download.streaming_download_manager import StreamingDownloadManager

from ..audio.cache import cached_clip, resolve_cache_dir
from ..audio.resolver import AudioResolver
from ..errors import AudioDialoguesError
from ..files import FileIdentity, OutputError, atomic_write, describe_os_error
from ..sources.annotations import (
    CONFIGS,
    AnnotationError,
    Record,
    gc_paused,
    iter_split_part,
    read_split,
    release_folders,
    split_files,
)
from ..sources.metadata import (
    PathOrUrl,
    SourceMetadata,
    is_url,
    metadata_download,
    metadata_sources,
    open_source_metadata,
)
from ..sources.published import embedded_audio_dirs, iter_published_part, read_published
from ..version import __version__
from .cards import CARDS, HOMEPAGE, LICENSE
from .decoding import audio_feature
from .options import ConfigError, check_options, is_paths
from .registration import DATASET_NAME
from .resolution import NO_AUDIO_ADVICE, MissingAudioError, ResolutionState, SplitReport, log_drops, resolve_records

logger = logging.getLogger(__name__)

REPORT_FILENAME = "audio_dialogues_report.json"
#: Beside the prepared data: what its records resolved to, to tell whether it is still current.
RESOLUTION_FILENAME = "audio_dialogues_resolution.json"
#: Beside the prepared copies of the dataset: digests of input files, by their stat identity.
DIGESTS_FILENAME = "audio_dialogues_input_digests.json"
#: A folder beside the prepared copies, named for what fixes ``load_dataset`` without the import (offline);
#: capitalised so that it sorts before every config in datasets' list of the folders.
IMPORT_HINT = "Import-audio_dialogues-before-load_dataset"
__all__ = ["AudioDialogues", "AudioDialoguesConfig", "MissingAudioError", "SplitReport", "builder_hash"]
_VERSION = datasets.Version("1.0.0")
_BATCH_SIZE = 1_000
list_feature = getattr(datasets, "List", None) or (lambda feature: [feature])  # datasets < 4: a list literal


@dataclass
class AudioDialoguesConfig(datasets.BuilderConfig):
    """Where annotations, metadata and audio are, and how to decode.

    Args:
        audio_dir: folder(s) with local audio, searched in order before the clip cache.
        audio_cache_dir: the clip cache (default: :func:`audio_dialogues.audio.cache.default_cache_dir`).
        sampling_rate: target rate of decoded audio; ``None`` or ``"native"`` keeps each file's own rate.
        decoder: ``soundfile`` (default, 2.8-3.3x faster), ``torchcodec`` (datasets' own Audio), ``none`` (paths).
        missing_audio: ``drop`` (default; counted and logged), ``error``, or ``keep`` (audio None).
        strong_labels, musiccaps_csv, ontology: source metadata, local paths or URLs.
        download_metadata: fetch metadata that is not given from its official URLs.
        download_audio: fetch clips that have no local audio into the clip cache while preparing.
        fetch_options: keyword arguments of :class:`audio_dialogues.fetching.FetchOptions`.
        num_shards: shards per split, for DataLoader workers and ``split_dataset_by_node``.
        repo_id, revision: read the annotations from a Hub dataset repo published with ``audio-dialogues push``
            (default when neither ``data_dir`` nor ``data_files`` is given: ``$AUDIO_DIALOGUES_REPO``), or from
            a folder on disk that ``audio-dialogues push --output-dir`` wrote (an existing folder wins over a
            Hub id of the same spelling; no ``revision``); its embedded audio, if any, is searched after
            ``audio_dir`` and before the clip cache.
    """

    audio_dir: PathOrUrl | list[PathOrUrl] | None = None
    audio_cache_dir: PathOrUrl | None = None
    sampling_rate: int | str = 16_000
    decoder: str = "soundfile"
    missing_audio: str = "drop"
    strong_labels: PathOrUrl | list[PathOrUrl] | None = None
    musiccaps_csv: PathOrUrl | None = None
    ontology: PathOrUrl | list[PathOrUrl] | None = None
    download_metadata: bool = False
    download_audio: bool = False
    fetch_options: dict[str, Any] = field(default_factory=dict)
    num_shards: int = 8
    repo_id: str | None = None
    revision: str | None = None

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
            beside = [] if self.published_repo() else release_folders(self.annotation_files())
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

    def published_repo(self) -> str | None:
        """The Hub repo the annotations come from: ``repo_id``, else ``$AUDIO_DIALOGUES_REPO`` if no local source."""
        from ..sources.published import REPO_ENV

        if self.repo_id or self.data_dir or self.data_files:
            return self.repo_id
        return os.environ.get(REPO_ENV) or None

    def published(self) -> Any:
        """The local copy of this config's shards in :meth:`published_repo` (:mod:`..sources.published`)."""
        from ..sources.published import download_published

        repo = self.published_repo()
        if repo is None:
            raise ConfigError(f"config {self.name!r} reads no published repo (no repo_id)")
        return download_published(repo, self.name, self.revision)

    def annotation_files(self) -> dict[str, list[Path]]:
        if self.published_repo():
            return self.published().files
        if not self.data_dir and not self.data_files:
            from ..sources.published import no_source_error

            raise no_source_error(self.name)
        data_files = {split: list(files) for split, files in self.data_files.items()} if self.data_files else None
        return split_files(self.name, data_dir=self.data_dir, data_files=data_files)

    def create_config_id(self, config_kwargs: dict, custom_features: Any = None) -> str:
        """datasets' id of the options, once they are checked; the builder adds the content digests on prepare.

        Local paths count as absolute: ``audio_dir="wavs"`` run from two folders names two different folders,
        and a copy prepared from one must never be served to the other (datasets keys on the text given).
        """
        self.validate()
        absolute = {k: _absolute(v) if k in _PATH_OPTIONS or (k == "repo_id" and isinstance(v, str)
                                                             and os.path.isdir(v)) else v
                    for k, v in config_kwargs.items()}
        return super().create_config_id(absolute, custom_features)

    def input_files(self) -> tuple[list[Path], list[str]]:
        """The local annotation and metadata files whose contents the prepared data depends on, and the URLs."""
        try:
            annotation_files = [p for files in self.annotation_files().values() for p in files]
        except AnnotationError:
            annotation_files = []  # reported with its full message when the splits are generated
        sources = [f for files in self.metadata_sources().values() for f in files]
        return annotation_files + [Path(f) for f in sources if not is_url(f)], [f for f in sources if is_url(f)]


#: Options naming local files or folders (metadata options may also be URLs, which stay as they are).
_PATH_OPTIONS = ("data_dir", "audio_dir", "audio_cache_dir", "strong_labels", "musiccaps_csv", "ontology")


def _absolute(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_absolute(v) for v in value]
    if isinstance(value, (str, os.PathLike)) and not is_url(str(value)):
        return os.path.abspath(value)
    return value


def config_features(config: AudioDialoguesConfig) -> datasets.Features:
    audio = audio_feature(config.decoder, config.target_rate)
    clip = {"ytid": datasets.Value("string"), "start_s": datasets.Value("float64"), "end_s": datasets.Value("float64")}
    turns = list_feature({"user": datasets.Value("string"), "assistant": datasets.Value("string")})
    common = {"id": datasets.Value("string")}
    if config.name == "comparison":
        return datasets.Features({**common, "audios": list_feature(audio), "clips": list_feature(clip), "turns": turns})
    features = {**common, "audio": audio, "clip": clip, "turns": turns}
    if config.name == "audioset":
        event = {"label": datasets.Value("string"), "start_s": datasets.Value("float64"),
                 "end_s": datasets.Value("float64")}
        features["sound_events"] = list_feature(event)
    else:
        features["caption"] = datasets.Value("string")
        features["aspects"] = list_feature(datasets.Value("string"))
    return datasets.Features(features)


def record_example(config: str, record: Record, paths: list[Path | None]) -> dict:
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
        # `repo_id` is a DatasetBuilder argument (a Hub namespace for the cache folder); here it names the
        # published repo the annotations come from, so it goes to the config instead. datasets 3.x passes the
        # name given to load_dataset as repo_id when it runs a cached copy of the loading script: not a repo.
        self._published_repo_id = kwargs.pop("repo_id", None)
        if self._published_repo_id == DATASET_NAME:
            self._published_repo_id = None
        try:
            super().__init__(*args, **kwargs)
        except OSError as err:
            failure = _prepare_failure(err, kwargs.get("cache_dir") or datasets.config.HF_DATASETS_CACHE)
            if failure is None:
                raise
            raise failure from err
        #: datasets' own config id (the options); the content and resolution digests are added on prepare.
        self.options_id = self.config_id
        self._resolved: dict[str, tuple[list[tuple[Record, list[Path | None]]], SplitReport]] | None = None
        self._resolution: ResolutionState | None = None
        self._stream_cache: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        # Pickled into every DataLoader worker: never ship resolved records or one process's resolver along.
        return {**super().__getstate__(), "_resolved": None, "_stream_cache": {}}

    def _create_builder_config(self, config_name: Any = None, custom_features: Any = None,
                               **config_kwargs: Any) -> Any:
        if self._published_repo_id is not None:
            config_kwargs["repo_id"] = self._published_repo_id
        return super()._create_builder_config(config_name, custom_features, **config_kwargs)

    def _info(self) -> datasets.DatasetInfo:
        self.config.validate()
        card = CARDS[self.config.name]
        return datasets.DatasetInfo(
            description=card.info_description,
            features=config_features(self.config),
            homepage=HOMEPAGE,
            license=LICENSE,
            citation=card.citation,
        )

    def _load_info(self) -> datasets.DatasetInfo:
        """The prepared copy's info, with this package's decoder on its standard ``Audio`` columns."""
        info = super()._load_info()
        info.features = config_features(self.config)
        return info

    # --- the cache key -------------------------------------------------------------------------

    def download_and_prepare(self, output_dir: str | None = None, *args: Any, **kwargs: Any) -> None:
        """Prepare (or find prepared) the copy keyed on the inputs' contents and their resolved files."""
        if output_dir is None and not args:
            mode = datasets.DownloadMode(kwargs.get("download_mode") or datasets.DownloadMode.REUSE_DATASET_IF_EXISTS)
            self._key_on_contents(reuse=mode == datasets.DownloadMode.REUSE_DATASET_IF_EXISTS)
        generated = self._resolved is not None
        try:
            super().download_and_prepare(output_dir, *args, **kwargs)
        except (OSError, datasets.exceptions.DatasetGenerationError) as err:
            failure = _prepare_failure(err, output_dir or self._cache_dir_root)
            if failure is None:
                raise
            raise failure from err
        self._resolved = None
        if generated:
            _leave_import_hint(self._dataset_dir())
            from .api import superseded_copies

            stale = superseded_copies(self._cache_dir_root)
            if stale:
                logger.warning("%d superseded prepared copies of %s (%.0f MB) in %s: `audio-dialogues clean` (or "
                               "audio_dialogues.dataset.api.clean()) deletes them", len(stale), self.dataset_name,
                               sum(c.size_bytes for c in stale) / 1e6, self._cache_dir_root)

    def split_reports(self) -> dict[str, SplitReport]:
        """What preparing each split kept and dropped: from this run, else saved beside the prepared data."""
        report = getattr(self, "report", None)
        if report is None:
            try:
                with open(os.path.join(self._output_dir, REPORT_FILENAME), encoding="utf-8") as f:
                    report = {split: SplitReport(**r) for split, r in json.load(f).items()}
            except (OSError, ValueError, TypeError):
                return {}  # prepared by other means (an explicit output_dir of another builder)
        return report

    def as_dataset(self, split: Any = None, *args: Any, **kwargs: Any) -> Any:
        """datasets' ``as_dataset``, refusing a split asked for by name that no audio could fill.

        Preparing keeps such a split, empty, so that it never blocks the others; asking for it (or for
        every split, when none has audio) raises :class:`MissingAudioError` with the reasons counted then.
        """
        reports = self.split_reports()
        asked = _split_names(split) if split is not None else [s for s, r in reports.items() if r.records]
        empty = [s for s in asked if s in reports and reports[s].without_audio]
        if empty and (split is not None or len(empty) == len(asked)):
            raise MissingAudioError("; ".join(reports[s].no_audio_message(f"{self.config.name}/{s}") for s in empty)
                                    + f". {NO_AUDIO_ADVICE}")
        with _split_errors(split):
            return super().as_dataset(split, *args, **kwargs)

    def as_streaming_dataset(self, split: Any = None, *args: Any, **kwargs: Any) -> Any:
        with _split_errors(split):
            return super().as_streaming_dataset(split, *args, **kwargs)

    def _as_dataset(self, split: Any, *args: Any, **kwargs: Any) -> datasets.Dataset:
        # datasets cannot read a split of no rows ("corresponds to no data"); an empty split is a table of none.
        info = self.info.splits.get(str(split)) if self.info.splits else None
        if info is not None and info.num_examples == 0:
            features = self.info.features
            return datasets.Dataset.from_dict({name: [] for name in features}, features=features, info=self.info.copy(),
                                              split=str(split))
        return super()._as_dataset(split, *args, **kwargs)

    def _dataset_dir(self) -> str:
        """The folder holding every prepared copy of this dataset (one subfolder per config id)."""
        return os.path.join(self._cache_dir_root, os.path.dirname(self._relative_data_dir(False, False)))

    def _key_on_contents(self, reuse: bool) -> None:
        """Set the config id to ``<options>-<input contents>-<resolution>``, resolving only when needed.

        A prepared copy with the same options and inputs is current when the files its records resolved
        to are unchanged (:meth:`ResolutionState.fingerprint`); then nothing is read or resolved.
        Otherwise the records are read and resolved now, once: the result both names the copy and
        becomes its data.
        """
        prefix = f"{self.options_id}-{self._input_digest()}-"
        parent = self._dataset_dir()
        if reuse and os.path.isdir(parent):
            for name in sorted(os.listdir(parent)):
                if name.startswith(prefix) and self._is_current(os.path.join(parent, name), name[len(prefix):]):
                    self._use_config_id(name)
                    return
        self._resolved, self._resolution = self._resolve_all()
        self._use_config_id(prefix + self._resolution.fingerprint())

    def _is_current(self, config_dir: str, fingerprint: str) -> bool:
        prepared = os.path.join(config_dir, str(self.config.version), self.hash or "")
        try:
            with open(os.path.join(prepared, RESOLUTION_FILENAME), encoding="utf-8") as f:
                state = ResolutionState.from_json(json.load(f))
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return os.path.exists(os.path.join(prepared, "dataset_info.json")) and state.fingerprint() == fingerprint

    def _use_config_id(self, config_id: str) -> None:
        self.config_id = config_id
        self._cache_dir = self._build_cache_dir()
        self._output_dir = self._cache_dir

    def _input_digest(self) -> str:
        """Digest of the inputs' contents: annotation and local metadata files, metadata URLs, the clip cache.

        Each file is read once per change: its digest is remembered with its :class:`FileIdentity` (size,
        mtime, ctime, inode), so a cached load does not re-read 100+ MB of annotations.
        """
        files, urls = self.config.input_files()
        memo_path = os.path.join(self._dataset_dir(), DIGESTS_FILENAME)
        try:
            with open(memo_path, encoding="utf-8") as f:
                memo = json.load(f)
        except (OSError, ValueError):
            memo = {}
        digest = hashlib.blake2b(digest_size=8)
        changed = False
        for path in files:
            key = os.path.abspath(path)
            try:
                identity = list(FileIdentity.of(key))
            except OSError:
                digest.update(f"{key}\0absent\n".encode())
                continue
            known = memo.get(key)
            if not (isinstance(known, list) and known[:4] == identity):
                content = hashlib.blake2b()
                try:
                    with open(key, "rb") as f:
                        for block in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 - consumed within the loop
                            content.update(block)
                except OSError:  # no permission: reading the file to prepare says so, naming it
                    digest.update(f"{key}\0unreadable\n".encode())
                    continue
                known = identity + [content.hexdigest()]
                memo[key] = known
                changed = True
            digest.update(f"{key}\0{known[4]}\n".encode())
        digest.update("\n".join(urls + [str(self.config.cache_dir)]).encode())
        if changed:
            try:
                with atomic_write(memo_path) as f:
                    json.dump(memo, f)
            except OSError:
                logger.debug("could not remember input digests in %s", memo_path)
        return digest.hexdigest()

    def _resolve_all(self) -> tuple[dict[str, tuple[list[tuple[Record, list[Path | None]]], SplitReport]],
                                    ResolutionState]:
        """Read, (fetch,) and resolve every split; also what the resolution depended on."""
        config = self.config
        published = config.published() if config.published_repo() else None
        files = published.files if published else config.annotation_files()
        metadata = open_source_metadata(config.metadata_sources(), download=metadata_download(self.dataset_name))
        resolver = AudioResolver(config.audio_dirs + embedded_audio_dirs(config.name, published), config.cache_dir)
        resolved = {}
        for split, paths in files.items():
            records = (read_published(config.name, paths) if published
                       else read_split(config.name, split, data_files={split: paths}, metadata=metadata))
            report = SplitReport()
            unlisted = [r for r in records if r.unlisted]
            if unlisted:
                report.unlisted, report.first_unlisted = len(unlisted), unlisted[0].origin
                logger.warning("%s/%s: %d release records name clips the source metadata does not place (first: "
                               "%s, %s)", config.name, split, len(unlisted), unlisted[0].origin,
                               ", ".join(unlisted[0].unlisted))
            fetch_failures = self._fetch_missing(records, resolver) if config.download_audio else {}
            with gc_paused():
                kept = list(resolve_records(records, resolver, config.missing_audio, report, fetch_failures))
            del records
            if report.without_audio:
                # Prepared empty rather than refused: a split nobody asked for must not block the others.
                # Asking for it by name raises (:meth:`as_dataset`), with this report's reasons.
                report.searched = resolver.searched()
                logger.warning("%s. Prepared as an empty split (asking for it by name raises MissingAudioError). %s",
                               report.no_audio_message(f"{config.name}/{split}"), NO_AUDIO_ADVICE)
            else:
                log_drops(f"{config.name}/{split}", report)
            resolved[split] = (kept, report)
        return resolved, ResolutionState.of(resolver)

    def _fetch_missing(self, records: list[Record], resolver: AudioResolver) -> dict[str, str]:
        """Fetch the clips without local audio; returns why each one the run could not get failed, by key."""
        from ..fetch import FetchOptions, fetch_clips

        # Clips with no local file and nothing in the cache (a local file that cannot serve is reported, not
        # replaced by a download).
        cache_dir = resolver.cache_dir
        assert cache_dir is not None  # the builder makes its resolvers with config.cache_dir
        wanted = {c for r in records for c in r.clips if c.has_times and resolver.index.find(c) is None
                  and cached_clip(cache_dir, c) is None}
        if wanted:
            logger.info("fetching %d clips into %s", len(wanted), resolver.cache_dir)
            # Fetch at the rate the dataset decodes to (native stays native) unless fetch_options say otherwise.
            options = FetchOptions(**{"sample_rate": self.config.target_rate, **self.config.fetch_options})
            report = fetch_clips(sorted(wanted, key=lambda c: c.key), cache_dir=resolver.cache_dir, options=options)
            return {o.clip.key: o.describe_failure() for o in report.outcomes if o.describe_failure()}
        return {}

    # --- generating the splits ------------------------------------------------------------------

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        if isinstance(dl_manager, StreamingDownloadManager):
            n = self.config.num_shards
            return [datasets.SplitGenerator(name=split, gen_kwargs={"shards": [
                        _Part(split, tuple(map(str, paths)), i, n) for i in range(n)]})
                    for split, paths in self.config.annotation_files().items()]
        if self._resolved is None:  # prepared into an explicit output_dir: nothing was resolved for the key
            self._resolved, self._resolution = self._resolve_all()
        self.report: dict[str, SplitReport] = {}
        generators = []
        for split in list(self._resolved):
            resolved, self.report[split] = self._resolved.pop(split)
            n = max(1, min(self.config.num_shards, len(resolved)))
            bounds = [len(resolved) * i // n for i in range(n + 1)]
            shards: list[pa.Table] = []
            for i in reversed(range(n)):  # from the end, freeing each shard's records once it is Arrow
                shards.insert(0, self._table(resolved[bounds[i] :]))
                del resolved[bounds[i] :]
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"shards": shards}))
        self._save_beside_data()
        return generators

    def _save_beside_data(self) -> None:
        """The report (a cached load can still say what was dropped) and what the resolution depended on."""
        output_dir = getattr(self, "_output_dir", None)
        if output_dir and os.path.isdir(output_dir):
            with atomic_write(os.path.join(output_dir, REPORT_FILENAME)) as f:
                json.dump({split: vars(r) for split, r in self.report.items()}, f, indent=1)
            if self._resolution is not None:
                with atomic_write(os.path.join(output_dir, RESOLUTION_FILENAME)) as f:
                    json.dump(self._resolution.to_json(), f)

    def _table(self, resolved: list[tuple[Record, list[Path | None]]]) -> pa.Table:
        """One shard as an Arrow table, built a batch of example dicts at a time.

        Shards travel inside the generator's arguments; as Arrow buffers that costs milliseconds where
        the same rows as Python objects cost seconds and several times the memory.
        """
        schema = self.info.features.arrow_schema
        batches = [
            pa.Table.from_pylist([record_example(self.config.name, r, p) for r, p in resolved[i : i + _BATCH_SIZE]],
                                 schema=schema)
            for i in range(0, len(resolved), _BATCH_SIZE)
        ]
        return pa.concat_tables(batches) if batches else schema.empty_table()

    def _generate_tables(self, shards: list[pa.Table | _Part]) -> Iterator[tuple[tuple[int, int], pa.Table]]:
        """The shards' rows in batches; writing Arrow directly skips datasets' per-example encoding."""
        for shard_index, shard in enumerate(shards):
            tables = self._stream_part(shard) if isinstance(shard, _Part) else (
                shard.slice(start, _BATCH_SIZE) for start in range(0, shard.num_rows, _BATCH_SIZE))
            for batch_index, table in enumerate(tables):
                yield (shard_index, batch_index), table

    # --- streaming: each part read and resolved where it is consumed ------------------------------

    def _stream_part(self, part: _Part) -> Iterator[pa.Table]:
        """A part's examples, resolved one record at a time; small first batches so the first example is quick.

        The report of a stream can only be per part: its drops are logged when the part ends (the split
        as a whole is never resolved), and ``missing_audio="error"`` stops at the first record concerned.
        """
        config = self.config
        metadata, resolver = self._stream_inputs()
        report = SplitReport()
        records = (iter_published_part(config.name, part.paths, part.index, part.count) if config.published_repo()
                   else iter_split_part(config.name, part.paths, part.index, part.count, metadata))
        batch: list[dict] = []
        size = 1
        schema = self.info.features.arrow_schema
        for record, paths in resolve_records(records, resolver, config.missing_audio, report):
            batch.append(record_example(config.name, record, paths))
            if len(batch) >= size:
                yield pa.Table.from_pylist(batch, schema=schema)
                batch, size = [], min(size * 4, _BATCH_SIZE)
        if batch:
            yield pa.Table.from_pylist(batch, schema=schema)
        log_drops(f"{config.name}/{part.split} part {part.index + 1}/{part.count}", report)
        if report.records and not report.kept:
            logger.warning("%s/%s part %d/%d: none of its %d records has audio; searched %s", config.name,
                           part.split, part.index + 1, part.count, report.records, resolver.searched())

    def _stream_inputs(self) -> tuple[SourceMetadata | None, AudioResolver]:
        """Source metadata and the audio resolver, made once per process that streams."""
        if "resolver" not in self._stream_cache:
            config = self.config
            self._stream_cache["metadata"] = open_source_metadata(config.metadata_sources(),
                                                                  download=metadata_download(self.dataset_name))
            published = config.published() if config.published_repo() else None
            self._stream_cache["resolver"] = AudioResolver(
                config.audio_dirs + embedded_audio_dirs(config.name, published), config.cache_dir)
        return self._stream_cache["metadata"], self._stream_cache["resolver"]


def _check_builder_kwargs(kwargs: dict[str, Any]) -> None:
    """Name a misspelt option, and check the options datasets consumes before the config exists."""
    known = set(inspect.signature(datasets.DatasetBuilder.__init__).parameters) - {"self", "config_kwargs"}
    options = {f.name for f in dataclasses.fields(AudioDialoguesConfig)}
    unknown = [k for k in kwargs if k not in known | options]
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; the options are: {', '.join(sorted(options - {'name'}))}")
    name = kwargs.get("config_name")
    if name is not None and name not in CONFIGS:
        raise ConfigError(f"unknown config {name!r:.80}; the configs are: {', '.join(CONFIGS)}")
    check_options({k: kwargs[k] for k in ("data_dir",) if k in kwargs})
    data_files = kwargs.get("data_files")
    if data_files is not None and not isinstance(data_files, datasets.data_files.DataFilesDict):
        splits = data_files if isinstance(data_files, dict) else {"train": data_files}
        for split, files in splits.items():
            if not (isinstance(split, str) and is_paths(files)):
                raise ConfigError(f"option data_files={data_files!r:.80} is not valid: data_files takes a path, a "
                                  "list of paths, or a dict of split name -> path(s), e.g. {'train': 'train.jsonl'}")


def _leave_import_hint(dataset_dir: str) -> None:
    """Put :data:`IMPORT_HINT` among the prepared copies, where datasets looks when nothing registered the name.

    ``load_dataset("audio_dialogues", ...)`` in a process that never ran ``import audio_dialogues`` asks the
    Hub for a repo of that name; offline, datasets falls back to this folder of the cache and fails with
    ``Couldn't find cache for audio_dialogues for config ...``, listing the folders here as the available
    configs. The hint's name is then in that list, saying what to do. It holds a ``dataset_info.json``
    naming no config, so datasets never mistakes it for data.
    """
    info = os.path.join(dataset_dir, IMPORT_HINT, "0.0.0", "0", "dataset_info.json")
    if os.path.exists(info):
        return
    try:
        with atomic_write(info) as f:
            json.dump({"config_name": "", "description": "Not data: run `import audio_dialogues` before "
                       "datasets.load_dataset('audio_dialogues', ...), or call audio_dialogues.load(...)."}, f)
    except OutputError as err:
        logger.debug("could not leave the import hint: %s", err)


def _cache_error(err: OSError, root: str | os.PathLike) -> OutputError:
    """A datasets cache folder that cannot be written, named with the cause (the lock or folder datasets made)."""
    return OutputError(f"{describe_os_error(err.filename or root, err)}; the datasets cache (cache_dir=, "
                       "--cache-dir, $HF_DATASETS_CACHE) must be a folder you can write, with space left")


def _prepare_failure(err: BaseException, root: str | os.PathLike) -> AudioDialoguesError | None:
    """What a failed prepare means in the package's terms, or ``None`` (a defect: let it through).

    datasets wraps what goes wrong while writing a split in ``DatasetGenerationError`` and checks free space
    itself (an ``OSError`` naming no file); pyarrow's write errors name no file either. So the chain is
    searched: the package's own error is raised as it was; an ``OSError`` naming no file or one inside the
    datasets cache (``root``: a full disk, a file where the cache folder should be, no permission) is the
    cache that cannot be written.
    """
    root = os.path.abspath(root)
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, AudioDialoguesError):
            return seen
        if isinstance(seen, OSError) and (
                not seen.filename or os.path.abspath(os.fsdecode(seen.filename)).startswith(root)):
            return _cache_error(seen, root)
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def _split_errors(split: Any) -> Iterator[None]:
    """datasets' ``ValueError`` for a split it does not know (``dev``, ``train[:x]``) as a :class:`ConfigError`."""
    try:
        yield
    except ValueError as err:
        if isinstance(err, AudioDialoguesError):
            raise
        raise ConfigError(f"split={split!r:.80} is not valid: {err}") from err


def _split_names(split: Any) -> list[str]:
    """The split names in a split argument of ``as_dataset``: ``"test"``, ``"train[:10%]+test"``, a list of these."""
    if isinstance(split, (list, tuple)):
        return [name for s in split for name in _split_names(s)]
    return [part.split("[")[0].strip() for part in str(split).split("+")]


@dataclass(frozen=True)
class _Part:
    """Part ``index`` of ``count`` of a split's annotation files: a stream shard, a few bytes to pickle."""

    split: str
    paths: tuple[str, ...]
    index: int
    count: int


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
