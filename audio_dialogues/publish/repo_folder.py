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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..audio.cache import resolve_cache_dir
from ..audio.headers import UnusableAudioError
from ..audio.resolver import AudioResolver
from ..dataset.builder import record_example
from ..dataset.cards import CARDS
from ..fetch.availability import Availability, clip_availability
from ..files import OutputError, atomic_write, check_output_folder, describe_os_error, replaced_folder
from ..sources.annotations import CONFIGS, SPLITS, AnnotationError, Record, gc_paused, read_split, split_files
from ..sources.clips import Clip
from ..sources.metadata import PathOrUrl, metadata_sources, open_source_metadata
from ..sources.records import audio_folders
from ..sources.repo_layout import DATA_DIR, audio_column, clip_file_name
from .card import CardInputs, published_features, render_card
from .errors import PublishError
from .plots import write_plots
from .provenance import read_provenance
from .stats import SplitStats, ontology_members, split_stats

#: Rows per row group at most: a row group is what streaming reads at once, and the Hub viewer pages audio by 100.
ROWS_PER_GROUP = 10_000
AUDIO_ROWS_PER_GROUP = 100
#: Bytes per row group at most (their uncompressed size, which the Hub viewer measures: it refuses row groups
#: over about 286 MiB); also what a writer or a reader holds in memory for one.
MAX_ROW_GROUP_BYTES = 100 << 20
#: Bytes per parquet shard at most.
MAX_SHARD_BYTES = 500 * 1000 * 1000
#: Parquet's own bytes beyond Arrow's for the same rows: page headers and levels (per MB of data), the footer.
_ENCODING_SLACK = 64 << 10


#: The command whose output folders :func:`build_repo_folder` writes (named in their manifest).
COMMAND = "push"


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


def _encoded_bound(nbytes: int) -> int:
    """An upper bound on a row group's parquet size (uncompressed) holding ``nbytes`` of Arrow data."""
    return nbytes + nbytes // 1000 + _ENCODING_SLACK


class _ShardWriter:
    """Rows into ``{split}-NNNNN-of-MMMMM.parquet`` shards, sized by bytes so any audio keeps both limits.

    Rows become Arrow tables a few MB at a time (``max_group_bytes / 8``: Arrow's builders briefly need a
    few times what they build, so converting a whole row group at once peaked at about six times its size);
    the tables gather into a row group (at most ``max_group_bytes`` of data and ``max_group_rows`` rows)
    that pyarrow's :class:`~pyarrow.parquet.ParquetWriter` writes as one; a shard is closed before the row
    group that would take it past ``max_shard_bytes``. Memory holds one row group, never a shard. A single
    row over the row-group limit cannot be split, so it is refused by name.
    """

    def __init__(self, folder: Path, split: str, schema: pa.Schema, *, max_group_rows: int, max_group_bytes: int,
                 max_shard_bytes: int) -> None:
        self.folder, self.split, self.schema = folder, split, schema
        self.max_group_rows, self.max_group_bytes = max_group_rows, max_group_bytes
        self.max_shard_bytes = max_shard_bytes
        self.paths: list[Path] = []
        self._sink: pa.NativeFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[dict] = []
        self._rows_bytes = 0
        self._group: list[pa.Table] = []
        self._group_rows = self._group_bytes = 0
        self.output = SplitOutput()

    def add(self, row: dict, nbytes: int) -> None:
        """Take ``row``, whose large values (audio) weigh ``nbytes``."""
        self._rows.append(row)
        self._rows_bytes += nbytes
        if len(self._rows) >= self.max_group_rows or self._rows_bytes >= self.max_group_bytes // 8:
            self._convert()

    def _convert(self) -> None:
        if self._rows:
            table = pa.Table.from_pylist(self._rows, schema=self.schema)
            self._rows, self._rows_bytes = [], 0
            self._gather(table)

    def _gather(self, table: pa.Table) -> None:
        if self._group and (self._group_rows + table.num_rows > self.max_group_rows
                            or _encoded_bound(self._group_bytes + table.nbytes) > self.max_group_bytes):
            self._write_group()
        if _encoded_bound(table.nbytes) > self.max_group_bytes:
            if table.num_rows == 1:
                raise PublishError(
                    f"{self.folder.name}/{self.split}: row {table['id'][0].as_py()!r} holds "
                    f"{table.nbytes / 2**20:.1f} MiB, more than a row group may ({self.max_group_bytes / 2**20:.1f} "
                    "MiB; the Hub viewer refuses row groups over about 286 MiB); shorten or re-encode its audio "
                    "(e.g. FLAC), or publish without --embed-audio")
            half = table.num_rows // 2  # slices share the table's buffers; nbytes counts only their own rows
            self._gather(table.slice(0, half))
            self._gather(table.slice(half))
            return
        self._group.append(table)
        self._group_rows += table.num_rows
        self._group_bytes += table.nbytes

    def _write_group(self) -> None:
        if not self._group:
            return
        table = pa.concat_tables(self._group)
        self._group, self._group_rows, self._group_bytes = [], 0, 0
        if self._sink is not None and self._sink.tell() + _encoded_bound(table.nbytes) > self.max_shard_bytes:
            self._close()
        if self._writer is None:
            path = self.folder / f".{self.split}-{len(self.paths):05d}.parquet.partial"
            self.paths.append(path)
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pq.ParquetWriter(self._sink, self.schema)
        self._writer.write_table(table, row_group_size=table.num_rows)
        self.output.rows += table.num_rows
        self.output.arrow_bytes += table.nbytes

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def finish(self) -> SplitOutput:
        self._convert()
        self._write_group()
        self._close()
        if not self.paths:  # an empty split still gets a (row-less) shard, so the card's split exists
            self.paths.append(self.folder / f".{self.split}-00000.parquet.partial")
            pq.write_table(self.schema.empty_table(), self.paths[0])
        n = len(self.paths)
        for i, partial in enumerate(self.paths):
            final = self.folder / f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            partial.replace(final)
            self.output.shards.append(final.name)
            self.output.parquet_bytes += final.stat().st_size
        return self.output


def _rows(config: str, records: Sequence[Record], resolver: AudioResolver | None,
          output: SplitOutput) -> Iterator[tuple[dict, int]]:
    """``(row, audio bytes)``: rows as the builder makes examples, minus local paths; with ``resolver``, plus
    the clips' bytes."""
    column = audio_column(config)
    for record in records:
        example = record_example(config, record, [None] * len(record.clips))
        example.pop(column)
        nbytes = 0
        if resolver is not None:
            audios: list[dict[str, Any] | None] = []
            for clip in record.clips:
                try:
                    path = resolver.resolve(clip)
                except UnusableAudioError as e:
                    raise PublishError(f"{record.origin}: cannot embed clip {clip.key}: {e}") from None
                if path is None:
                    output.missing_audio += 1
                    audios.append(None)
                else:
                    audio = path.read_bytes()
                    nbytes += len(audio)
                    audios.append({"bytes": audio, "path": clip_file_name(clip, path.suffix.lower())})
            example[column] = audios if config == "comparison" else audios[0]
        yield example, nbytes


def _write_split(config: str, split: str, records: Sequence[Record], folder: Path,
                 resolver: AudioResolver | None, *, max_shard_bytes: int, max_row_group_bytes: int) -> SplitOutput:
    embed = resolver is not None
    writer = _ShardWriter(folder, split, published_features(config, embed).arrow_schema,
                          max_group_rows=AUDIO_ROWS_PER_GROUP if embed else ROWS_PER_GROUP,
                          max_group_bytes=max_row_group_bytes, max_shard_bytes=max_shard_bytes)
    for row, nbytes in _rows(config, records, resolver, writer.output):
        writer.add(row, nbytes)
    return writer.finish()


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
    max_shard_bytes: int = MAX_SHARD_BYTES,
    max_row_group_bytes: int = MAX_ROW_GROUP_BYTES,
) -> FolderReport:
    """Write the repo folder of the ``configs`` (default: every config with annotations in ``data_dir``).

    Release-shape records are completed from the source metadata as the builder does. ``audio_dir`` and
    the clip cache are searched for each clip (for ``embed_audio``, and for the card's clip availability).
    ``repo_id`` only appears in the card's usage examples. Shards hold at most ``max_shard_bytes`` and their
    row groups at most ``max_row_group_bytes`` (uncompressed, as the Hub viewer measures them).

    ``output_dir`` must be new, empty or an earlier output of this function: anything else is refused before
    anything is read or written. The folder is built beside it and renamed into place; an earlier output's
    files (those its manifest lists) are deleted only then, and nothing else ever is.
    """
    if repo_id is not None:
        check_repo_id(repo_id)
    root = Path(output_dir)
    try:
        check_output_folder(root, COMMAND)
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise PublishError(f"{data_dir}: --data-dir is not a folder")
        files = _annotation_files(data_dir, configs)
        with replaced_folder(root, COMMAND) as new:
            report = _build(new, data_dir, files, embed_audio=embed_audio, audio_dir=audio_dir,
                            audio_cache_dir=audio_cache_dir, metadata_options=dict(
                                strong_labels=strong_labels, musiccaps_csv=musiccaps_csv, ontology=ontology,
                                download_metadata=download_metadata), repo_id=repo_id,
                            limits={"max_shard_bytes": max_shard_bytes, "max_row_group_bytes": max_row_group_bytes})
    except OutputError as e:
        raise PublishError(str(e)) from None
    except OSError as e:  # an unwritable or full output folder: say which path and what to do
        raise PublishError(f"cannot build the repo folder {root}: {describe_os_error(e.filename or root, e)}") from None
    report.root = root
    return report


def check_repo_id(repo_id: str) -> None:
    """Refuse an id the Hub would refuse (huggingface_hub's own check), before anything is built or sent.

    The same in both modes: an ``--output-dir`` folder's card names the id in its usage lines.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"{repo_id!r} is not a Hub repo id (namespace/name): {e}") from None


def _build(root: Path, data_dir: Path, files: dict[str, dict[str, list[Path]]], *, embed_audio: bool,
           audio_dir: PathOrUrl | Sequence[PathOrUrl] | None, audio_cache_dir: PathOrUrl | None,
           metadata_options: dict, repo_id: str | None, limits: dict[str, int]) -> FolderReport:
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
                output = _write_split(config, split, records, folder, resolver if embed_audio else None, **limits)
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
