"""The repo folder of a published version: parquet shards, figures and the dataset card.

Layout (what ``--output-dir`` writes and what a push uploads)::

    README.md                                  the card; its YAML ``configs:`` point at the shards
    data/{config}/{split}-00000-of-00001.parquet
    images/{config}_{turns,classes,questions}.png

Only standard ``datasets`` feature types are written (``Value``, ``List``, ``Audio``), and the features
travel in each shard's schema metadata as well as in the card, so plain ``datasets`` reads the repo
with nothing else installed. Without ``embed_audio`` the rows name their clips (id and window) and hold
no audio, since YouTube audio is not ours to redistribute. With it, each clip's file is embedded as the
bytes of a standard ``Audio`` column; rows are written a row group at a time, so memory stays flat
however many clips there are.

The same inputs give byte-identical files, so a re-push of unchanged data uploads nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from ..dataset.builder import AudioDialoguesConfig, _example, _features, _List
from ..dataset.cards import CARDS
from ..dataset.local_audio import AudioResolver, UnusableAudioError
from ..errors import AudioDialoguesError
from ..fetch.cache import resolve_cache_dir
from ..files import atomic_write, describe_os_error
from ..sources.annotations import CONFIGS, SPLITS, AnnotationError, Record, gc_paused, read_split, split_files
from ..sources.clips import Clip
from ..sources.metadata import PathOrUrl, metadata_sources, open_source_metadata
from ..sources.records import audio_folders
from .availability import Availability, clip_availability
from .card import CardInputs, render_card
from .layout import DATA_DIR, PLOTS_DIR, audio_column, clip_file_name
from .plots import write_plots
from .provenance import read_provenance
from .stats import SplitStats, ontology_members, split_stats

#: Annotation-only shards: rows per shard and per row group (a row group is what streaming reads at once).
ROWS_PER_SHARD = 200_000
ROWS_PER_GROUP = 10_000
#: Shards with embedded audio: bytes per shard, and rows per row group (the Hub viewer pages audio by 100).
AUDIO_BYTES_PER_SHARD = 500 << 20
AUDIO_ROWS_PER_GROUP = 100
_OWNED = ("README.md", DATA_DIR, PLOTS_DIR)


class PublishError(AudioDialoguesError, ValueError):
    """A version that cannot be built or pushed; the message says what and where."""


def published_features(config: str, embed_audio: bool) -> datasets.Features:
    """The builder's features with standard types only: no audio column, or a plain ``Audio`` one."""
    features = _features(AudioDialoguesConfig(name=config, decoder="none"))
    column = audio_column(config)
    out = {}
    for name, feature in features.items():
        if name != column:
            out[name] = feature
        elif embed_audio:
            out[name] = _List(datasets.Audio()) if config == "comparison" else datasets.Audio()
    return datasets.Features(out)


@dataclass
class SplitOutput:
    rows: int = 0
    shards: list[str] = field(default_factory=list)
    parquet_bytes: int = 0
    arrow_bytes: int = 0
    #: Clips with no audio to embed (their rows hold a null audio).
    missing_audio: int = 0


@dataclass
class FolderReport:
    """What was written: per config and split, rows, shards and sizes; the statistics the card shows."""

    root: Path
    embed_audio: bool
    splits: dict[str, dict[str, SplitOutput]] = field(default_factory=dict)
    stats: dict[str, dict[str, SplitStats]] = field(default_factory=dict)
    availability: dict[str, Availability] = field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for config, splits in self.splits.items():
            for split, out in splits.items():
                extra = f", {out.missing_audio} clips without audio" if self.embed_audio else ""
                lines.append(f"{config}/{split}: {out.rows:,} rows in {len(out.shards)} shard(s), "
                             f"{out.parquet_bytes / 1e6:.1f} MB{extra}")
        return "\n".join(lines)


class _ShardWriter:
    """Write tables into ``{split}-NNNNN-of-MMMMM.parquet`` files, a new file past a row or byte limit."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, max_rows: int, max_bytes: int | None) -> None:
        self.folder, self.split, self.schema = folder, split, schema
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows = self._bytes = 0
        self.output = SplitOutput()

    def write(self, table: pa.Table) -> None:
        if self._writer is not None and (self._rows >= self.max_rows
                                         or (self.max_bytes is not None and self._bytes >= self.max_bytes)):
            self._close()
        if self._writer is None:
            path = self.folder / f".{self.split}-{len(self.paths):05d}.parquet.partial"
            self.paths.append(path)
            self._writer = pq.ParquetWriter(path, self.schema)
            self._rows = self._bytes = 0
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._rows += table.num_rows
        self._bytes += table.nbytes
        self.output.rows += table.num_rows
        self.output.arrow_bytes += table.nbytes

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> SplitOutput:
        self._close()
        if not self.paths:  # an empty split still gets a (row-less) shard, so the card's split exists
            self.write(self.schema.empty_table())
            self._close()
        n = len(self.paths)
        for i, partial in enumerate(self.paths):
            final = self.folder / f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            partial.replace(final)
            self.output.shards.append(final.name)
            self.output.parquet_bytes += final.stat().st_size
        return self.output


def _rows(config: str, records: Sequence[Record], resolver: AudioResolver | None,
          output: SplitOutput) -> Iterator[dict]:
    """Rows as the builder makes examples, minus local paths; with ``resolver``, plus the clips' bytes."""
    column = audio_column(config)
    for record in records:
        example = _example(config, record, [None] * len(record.clips))
        example.pop(column)
        if resolver is not None:
            audios = []
            for clip in record.clips:
                try:
                    path = resolver.resolve(clip)
                except UnusableAudioError as e:
                    raise PublishError(f"{record.origin}: cannot embed clip {clip.key}: {e}") from None
                if path is None:
                    output.missing_audio += 1
                    audios.append(None)
                else:
                    audios.append({"bytes": path.read_bytes(), "path": clip_file_name(clip, path.suffix.lower())})
            example[column] = audios if config == "comparison" else audios[0]
        yield example


def _write_split(config: str, split: str, records: Sequence[Record], folder: Path,
                 resolver: AudioResolver | None) -> SplitOutput:
    embed = resolver is not None
    schema = published_features(config, embed).arrow_schema
    writer = _ShardWriter(folder, split, schema, max_rows=ROWS_PER_SHARD,
                          max_bytes=AUDIO_BYTES_PER_SHARD if embed else None)
    group = AUDIO_ROWS_PER_GROUP if embed else ROWS_PER_GROUP
    batch: list[dict] = []
    for row in _rows(config, records, resolver, writer.output):
        batch.append(row)
        if len(batch) == group:
            writer.write(pa.Table.from_pylist(batch, schema=schema))
            batch = []
    if batch:
        writer.write(pa.Table.from_pylist(batch, schema=schema))
    return writer.finish()


def _prepare_output(root: Path) -> None:
    """An empty folder, or one this module wrote before (its owned entries are replaced, nothing else)."""
    if root.exists() and not root.is_dir():
        raise PublishError(f"{root}: output path exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    foreign = [p.name for p in root.iterdir() if p.name not in _OWNED]
    if foreign:
        raise PublishError(f"{root}: not empty and not a repo folder written by audio-dialogues "
                           f"(holds {', '.join(sorted(foreign)[:5])}); choose an empty or new folder")
    for name in _OWNED:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def build_repo_folder(
    output_dir: str | Path,
    data_dir: str | Path,
    configs: Sequence[str] | None = None,
    *,
    embed_audio: bool = False,
    audio_dir: PathOrUrl | Sequence[PathOrUrl] | None = None,
    audio_cache_dir: PathOrUrl | None = None,
    strong_labels: PathOrUrl | Sequence[PathOrUrl] | None = None,
    musiccaps_csv: PathOrUrl | None = None,
    ontology: PathOrUrl | None = None,
    download_metadata: bool = False,
    repo_id: str | None = None,
) -> FolderReport:
    """Write the repo folder of the ``configs`` (default: every config with annotations in ``data_dir``).

    Release-shape records are completed from the source metadata as the builder does. ``audio_dir`` and
    the clip cache are searched for each clip (for ``embed_audio``, and for the card's clip availability).
    ``repo_id`` only appears in the card's usage examples.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise PublishError(f"{data_dir}: --data-dir is not a folder")
    files = _annotation_files(data_dir, configs)
    root = Path(output_dir)
    try:
        return _build(root, data_dir, files, embed_audio=embed_audio, audio_dir=audio_dir,
                      audio_cache_dir=audio_cache_dir, metadata_options=dict(
                          strong_labels=strong_labels, musiccaps_csv=musiccaps_csv, ontology=ontology,
                          download_metadata=download_metadata), repo_id=repo_id)
    except OSError as e:  # an unwritable or full output folder: say which path and what to do
        raise PublishError(f"cannot build the repo folder {root}: {describe_os_error(e.filename or root, e)}") from None


def _build(root: Path, data_dir: Path, files: dict[str, dict[str, list[Path]]], *, embed_audio: bool,
           audio_dir: PathOrUrl | Sequence[PathOrUrl] | None, audio_cache_dir: PathOrUrl | None,
           metadata_options: dict, repo_id: str | None) -> FolderReport:
    _prepare_output(root)
    audio_dirs = [audio_dir] if isinstance(audio_dir, (str, Path)) else list(audio_dir or [])
    cache_dir = resolve_cache_dir(audio_cache_dir)
    report = FolderReport(root=root, embed_audio=embed_audio)
    plots: dict[str, dict[str, str]] = {}
    for config, split_paths in files.items():
        # the builder's folders: the user's, then those of the authors' release files (audio lies beside them)
        resolver = AudioResolver(audio_folders(config, data_dir, audio_dirs), cache_dir)
        metadata = open_source_metadata(metadata_sources(config, **metadata_options))
        folder = root / DATA_DIR / config
        folder.mkdir(parents=True, exist_ok=True)
        children = metadata.class_children if metadata is not None else {}
        named = ontology_members(children, CARDS[config].paper_class_shares)
        report.splits[config], report.stats[config] = {}, {}
        clips: dict[str, Clip] = {}
        for split, paths in split_paths.items():
            with gc_paused():  # records are many small acyclic objects: collections would rescan them all
                records = read_split(config, split, data_files={split: paths}, metadata=metadata)
                output = _write_split(config, split, records, folder, resolver if embed_audio else None)
                clips.update((c.key, c) for r in records for c in r.clips)
                del records
            report.splits[config][split] = output
            shards = [str(folder / name) for name in output.shards]
            columns = [c for c in published_features(config, False) if c != "id"]
            report.stats[config][split] = split_stats(config, split, pq.read_table(shards, columns=columns),
                                                      named_classes=named)
        availability = clip_availability(clips.values(), resolver)
        if availability is not None:
            report.availability[config] = availability
        plots[config] = write_plots(config, report.stats[config], root)
    inputs = CardInputs(
        configs=list(files), stats=report.stats, outputs=report.splits, plots=plots,
        availability=report.availability, provenance=read_provenance(data_dir), repo_id=repo_id,
        embed_audio=embed_audio,
    )
    with atomic_write(root / "README.md") as f:
        f.write(render_card(inputs))
    return report


def _annotation_files(data_dir: Path, configs: Sequence[str] | None) -> dict[str, dict[str, list[Path]]]:
    """``config -> split -> files``; a config asked for by name must have annotations."""
    out = {}
    for config in configs or CONFIGS:
        if config not in CONFIGS:
            raise PublishError(f"unknown config {config!r}; expected one of {', '.join(CONFIGS)}")
        try:
            out[config] = split_files(config, data_dir=data_dir)
        except AnnotationError:
            if configs:
                raise
    if not out:
        names = ", ".join(f"{c}_{{train,test}}.json[l]" for c in CONFIGS)
        raise PublishError(f"{data_dir}: no annotation files ({names})")
    for config, splits in out.items():
        out[config] = {split: splits[split] for split in SPLITS if split in splits}
    return out
