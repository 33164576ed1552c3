"""A published repo as the builder's annotation source: ``load_dataset("audio_dialogues", cfg, repo_id=...)``.

The config's parquet shards (``data/{config}/{split}-*.parquet``, as :mod:`.repo_folder` writes them) are
downloaded with ``huggingface_hub`` into its cache (``HF_HOME``, ``HF_ENDPOINT`` and the token are
honoured; ``revision`` pins a branch, tag or commit) and read back into the same validated records a local
release gives, so audio is then resolved exactly as with ``data_dir``. When the repo embeds audio, each
clip is written once into a folder keyed by the repo's commit, which the builder searches after the
user's own folders and before the clip cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ..files import FileIdentity, atomic_write
from .annotations import SPLITS, AnnotationError, Record, Turn
from .clips import Clip, ClipError
from .repo_layout import DATA_DIR, audio_column, clip_file_name

#: Names the repo to load when neither ``data_dir``, ``data_files`` nor ``repo_id`` is given.
REPO_ENV = "AUDIO_DIALOGUES_REPO"
_BATCH_ROWS = 1_000
NO_SOURCE_MESSAGE = (
    "no annotations for config {config!r}. Give one of: data_dir= a folder with the authors' release "
    "(dialogues_audioset_thresholded.json, ...) or {config}_train.jsonl / {config}_test.jsonl; "
    "repo_id= a published Hub dataset repo (or set ${env}); or make the data with `audio-dialogues generate`"
)


def no_source_error(config: str) -> AnnotationError:
    return AnnotationError(NO_SOURCE_MESSAGE.format(config=config, env=REPO_ENV))


@dataclass
class Published:
    """The local copy of one config of a published repo."""

    repo_id: str
    commit: str
    files: dict[str, list[Path]]
    #: The folder holding its embedded clips (extracted on first use), or None when it embeds no audio.
    embedded: Path | None


def download_published(repo_id: str, config: str, revision: str | None = None) -> Published:
    """Fetch the shards of ``config`` from ``repo_id`` (only what changed since the last call is downloaded).

    ``repo_id`` may also name a local folder written by ``audio-dialogues push --output-dir``: it is read
    in place, exactly as its upload would be, so a version can be checked before it is published.
    """
    if os.path.isdir(repo_id):
        return local_published(Path(repo_id), config, revision)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from ..hub_http import install

    install()  # every request bounded as a whole (the package's one HTTP timeout policy)

    try:
        local = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                       allow_patterns=[f"{DATA_DIR}/{config}/*.parquet"]))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:
        at = f"@{revision}" if revision else ""
        raise AnnotationError(f"could not read the annotations of {repo_id}{at} from the Hub: "
                              f"{str(e).splitlines()[0]}") from e
    files = _shards(local, config)
    if not files:
        raise AnnotationError(f"{repo_id}: no {DATA_DIR}/{config}/{{train,test}}-*.parquet shards; "
                              "is it a repo pushed with `audio-dialogues push`, and does it hold this config?")
    return Published(repo_id, local.name, files, _embedded_folder(repo_id.replace("/", "--"), local.name, config,
                                                                   files))


def local_published(folder: Path, config: str, revision: str | None = None) -> Published:
    """``config`` of a repo folder on disk (``audio-dialogues push --output-dir``), read in place.

    Its "commit" is a digest of the shards' names and :class:`~audio_dialogues.files.FileIdentity`, so
    embedded clips are extracted again when the folder is written again.
    """
    if revision is not None:
        raise AnnotationError(f"{folder}: revision={revision!r} names a branch, tag or commit of a Hub repo; a "
                              "local repo folder has none (leave revision out)")
    files = _shards(folder, config)
    if not files:
        raise AnnotationError(f"{folder}: no {DATA_DIR}/{config}/{{train,test}}-*.parquet shards; is it a folder "
                              "written by `audio-dialogues push --output-dir`, and does it hold this config?")
    stamp = hashlib.blake2b(digest_size=8)
    for path in (p for paths in files.values() for p in paths):
        stamp.update(("\0".join(map(str, (path.name, *FileIdentity.of(path)))) + "\n").encode())
    where = hashlib.blake2b(os.path.abspath(folder).encode(), digest_size=6).hexdigest()
    commit = stamp.hexdigest()
    return Published(str(folder), commit, files, _embedded_folder(f"local--{folder.name}-{where}", commit, config,
                                                                  files))


def _shards(root: Path, config: str) -> dict[str, list[Path]]:
    files = {split: sorted((root / DATA_DIR / config).glob(f"{split}-*.parquet")) for split in SPLITS}
    return {split: paths for split, paths in files.items() if paths}


def _embedded_folder(name: str, commit: str, config: str, files: dict[str, list[Path]]) -> Path | None:
    """Where the embedded clips of a repo's commit are extracted, or None when its shards embed no audio."""
    first = next(iter(files.values()))[0]
    if audio_column(config) not in pq.read_schema(first).names:
        return None
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "audio_dialogues_embedded" / name / commit / config


def _clip(where: str, value: object) -> Clip:
    if not isinstance(value, dict):
        raise AnnotationError(f"{where}: clip must be a struct (ytid, start_s, end_s), got {value!r}")
    ytid = value.get("ytid")
    if not isinstance(ytid, str):
        raise AnnotationError(f"{where}: clip ytid must be a string, got {ytid!r}")
    try:
        return Clip(ytid, value.get("start_s"), value.get("end_s"))
    except ClipError as e:
        raise AnnotationError(f"{where}: {e}") from None


def _record(config: str, where: str, row: dict) -> Record:
    record_id = row.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise AnnotationError(f"{where}: id must be a non-empty string")
    where = f"{where} (id {record_id!r})"
    clips = [_clip(where, c) for c in row.get("clips") or []] if config == "comparison" \
        else [_clip(where, row.get("clip"))]
    turns = row.get("turns")
    if not isinstance(turns, list) or not turns or not all(
            isinstance(t, dict) and isinstance(t.get("user"), str) and isinstance(t.get("assistant"), str)
            for t in turns):
        raise AnnotationError(f"{where}: turns must be a non-empty list of {{user, assistant}} strings")
    meta = {}
    if config == "audioset":
        meta["sound_events"] = row.get("sound_events") or []
    elif config == "music":
        meta["caption"] = row.get("caption") or ""
        meta["aspects"] = row.get("aspects") or []
    return Record(record_id, clips, [Turn(t["user"], t["assistant"]) for t in turns], meta, where)


def read_published(config: str, paths: list[Path]) -> list[Record]:
    """The records of one split's shards (audio bytes are not read here)."""
    records = []
    for path in paths:
        shard = pq.ParquetFile(path)
        columns = [c for c in shard.schema_arrow.names if c != audio_column(config)]
        index = 0
        for batch in shard.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            for row in batch.to_pylist():
                records.append(_record(config, f"{path.name}[{index}]", row))
                index += 1
    return records


def iter_published_part(config: str, paths: Sequence[str | os.PathLike], index: int, count: int) -> Iterator[Record]:
    """Part ``index`` of ``count`` of a split's shards (every ``count``-th row), for streaming readers."""
    row = 0
    for path in map(Path, paths):
        shard = pq.ParquetFile(path)
        columns = [c for c in shard.schema_arrow.names if c != audio_column(config)]
        for batch in shard.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
            for i, values in enumerate(batch.to_pylist()):
                if (row + i) % count == index:
                    yield _record(config, f"{path.name}[{row + i}]", values)
            row += batch.num_rows
        row = 0


def embedded_audio_dirs(config: str, published: Published | None) -> list[Path]:
    """The folder of the published repo's embedded clips, as an extra audio folder (none without a repo)."""
    folder = extract_embedded(config, published) if published is not None else None
    return [folder] if folder is not None else []


def extract_embedded(config: str, published: Published) -> Path | None:
    """Write each embedded clip once into ``published.embedded`` (named as local folders name clips)."""
    if published.embedded is None:
        return None
    folder = published.embedded
    done = folder / ".complete"
    if done.is_file():
        return folder
    column, clip_column = audio_column(config), "clips" if config == "comparison" else "clip"
    for paths in published.files.values():
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=100, columns=[clip_column, column]):
                for row in batch.to_pylist():
                    clips = row[clip_column] if config == "comparison" else [row[clip_column]]
                    audios = row[column] if config == "comparison" else [row[column]]
                    for clip, audio in zip(clips, audios or [], strict=False):
                        if not audio or not audio.get("bytes") or not clip:
                            continue
                        suffix = os.path.splitext(audio.get("path") or "")[1] or ".flac"
                        target = folder / clip_file_name(_clip(path.name, clip), suffix.lower())
                        if not target.exists():
                            with atomic_write(target, binary=True) as f:
                                f.write(audio["bytes"])
    folder.mkdir(parents=True, exist_ok=True)
    done.touch()
    return folder
