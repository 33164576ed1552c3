"""Source metadata: where release-shape records get their clip times, sound events and captions.

The authors' release names audio files (``Y<ytid>.wav``) but not the YouTube time window. The window,
and the labels the dialogues were generated from, live in the source datasets' own metadata:

- AudioSet strong labels (TSV: ``segment_id, start_time_seconds, end_time_seconds, label``), one row per
  sound event; ``segment_id`` is ``<11-char ytid>_<start ms>``, event times are relative to the clip;
- the MusicCaps CSV (``ytid, start_s, end_s, audioset_positive_labels, aspect_list, caption, ...``);
- the AudioSet ontology (JSON list of ``{"id": "/m/..", "name": ...}``), to name strong-label classes.

Each file may be a local path or a URL (fetched and cached by the `datasets` download manager).
"""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .clips import Clip, ClipError

#: Official locations, used when ``download_metadata=True`` and no file is given.
STRONG_LABELS_URLS = (
    "http://storage.googleapis.com/us_audioset/youtube_corpus/strong/audioset_train_strong.tsv",
    "http://storage.googleapis.com/us_audioset/youtube_corpus/strong/audioset_eval_strong.tsv",
)
ONTOLOGY_URL = "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"
MUSICCAPS_URL = "https://huggingface.co/datasets/google/MusicCaps/resolve/main/musiccaps-public.csv"

PathOrUrl = str | Path
STRONG_LABELS_HEADER = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
MUSICCAPS_COLUMNS = ("ytid", "start_s", "end_s", "aspect_list", "caption")


class MetadataError(ValueError):
    """A source metadata file that cannot be read; the message names the file, the row and the problem."""


@dataclass(frozen=True, slots=True)
class SoundEvent:
    label: str
    start_s: float
    end_s: float

    def to_dict(self) -> dict:
        return {"label": self.label, "start_s": self.start_s, "end_s": self.end_s}


@dataclass(frozen=True, slots=True)
class MusicCapsEntry:
    clip: Clip
    caption: str
    aspects: tuple[str, ...]
    #: MusicCaps' own test flag (its clips are in AudioSet's eval set); regeneration uses it to split.
    is_audioset_eval: bool = False


@dataclass
class SourceMetadata:
    """Clip windows and labels by YouTube id, merged from any number of source files."""

    #: ytid -> {start ms -> (clip, events)}; a ytid may have several strong-label segments.
    strong: dict[str, dict[int, tuple[Clip, list[SoundEvent]]]] = field(default_factory=dict)
    music: dict[str, MusicCapsEntry] = field(default_factory=dict)
    label_names: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.strong or self.music)

    def clip_for(self, config: str, ytid: str) -> Clip | None:
        """The clip window of ``ytid`` in the source of ``config``; None when unknown or ambiguous."""
        if config == "music":
            entry = self.music.get(ytid)
            return entry.clip if entry else None
        segments = self.strong.get(ytid)
        if not segments or len(segments) > 1:
            return None
        (clip, _events), = segments.values()
        return clip

    def sound_events(self, clip: Clip) -> list[dict]:
        """Strong-label events of ``clip`` (times relative to the clip), named through the ontology."""
        if clip.start_s is None:
            return []
        segment = self.strong.get(clip.ytid, {}).get(round(clip.start_s * 1000))
        if segment is None:
            return []
        return [
            {"label": self.label_names.get(e.label, e.label), "start_s": e.start_s, "end_s": e.end_s}
            for e in segment[1]
        ]

    def music_entry(self, ytid: str) -> MusicCapsEntry | None:
        return self.music.get(ytid)


def read_strong_labels(path: Path, into: SourceMetadata | None = None) -> SourceMetadata:
    """Read an AudioSet strong-label TSV; the ytid is the first 11 characters of ``segment_id``."""
    meta = into if into is not None else SourceMetadata()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:4]) != STRONG_LABELS_HEADER:
            expected = "\t".join(STRONG_LABELS_HEADER)
            raise MetadataError(f"{path}:1: expected the header {expected!r}, got {header!r}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 4:
                raise MetadataError(f"{path}:{line}: expected 4 tab-separated columns, got {row!r}")
            try:
                clip = Clip.from_segment_id(row[0])
                start, end = float(row[1]), float(row[2])
            except (ClipError, ValueError) as e:
                raise MetadataError(f"{path}:{line}: {e}") from None
            if not 0 <= start <= end:
                raise MetadataError(f"{path}:{line}: event times {start}..{end} are negative or inverted")
            start_ms = round(clip.start_s * 1000)
            segment = meta.strong.setdefault(clip.ytid, {}).setdefault(start_ms, (clip, []))
            segment[1].append(SoundEvent(row[3], start, end))
    return meta


def read_ontology(path: Path, into: SourceMetadata | None = None) -> SourceMetadata:
    meta = into if into is not None else SourceMetadata()
    try:
        classes = json.loads(Path(path).read_text(encoding="utf-8"))
        meta.label_names.update({c["id"]: c["name"] for c in classes})
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise MetadataError(f"{path}: not an AudioSet ontology (a JSON list of {{'id', 'name'}}): {e}") from None
    return meta


def _parse_aspects(text: str) -> tuple[str, ...]:
    """MusicCaps stores aspects as a Python list literal (``"['a', 'b']"``); parse it without eval."""
    if not text.strip():
        return ()
    value = ast.literal_eval(text)
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise ValueError(f"aspect_list {text!r} is not a list of strings")
    return tuple(value)


def read_musiccaps(path: Path, into: SourceMetadata | None = None) -> SourceMetadata:
    meta = into if into is not None else SourceMetadata()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MUSICCAPS_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise MetadataError(f"{path}:1: MusicCaps CSV lacks the columns {missing}")
        for line, row in enumerate(reader, start=2):
            try:
                clip = Clip(row["ytid"], float(row["start_s"]), float(row["end_s"]))
                aspects = _parse_aspects(row["aspect_list"])
            except (ClipError, ValueError, SyntaxError) as e:
                raise MetadataError(f"{path}:{line}: {e}") from None
            is_eval = (row.get("is_audioset_eval") or "").strip().lower() in ("true", "1")
            meta.music[clip.ytid] = MusicCapsEntry(clip, row["caption"], aspects, is_eval)
    return meta


def load_source_metadata(
    *,
    strong_labels: Sequence[Path] = (),
    musiccaps_csv: Sequence[Path] = (),
    ontology: Sequence[Path] = (),
) -> SourceMetadata:
    """Read and merge local metadata files (URLs are resolved to local files by the caller)."""
    meta = SourceMetadata()
    for path in strong_labels:
        read_strong_labels(path, meta)
    for path in musiccaps_csv:
        read_musiccaps(path, meta)
    for path in ontology:
        read_ontology(path, meta)
    return meta


def as_list(value: None | PathOrUrl | Iterable[PathOrUrl]) -> list[str]:
    """Normalise a metadata option (one path/URL, several, or none) to a list of strings."""
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)]
    return [str(v) for v in value]


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://", "hf://", "s3://", "gs://"))


def metadata_sources(
    config: str,
    *,
    strong_labels: None | PathOrUrl | Iterable[PathOrUrl] = None,
    musiccaps_csv: None | PathOrUrl | Iterable[PathOrUrl] = None,
    ontology: None | PathOrUrl | Iterable[PathOrUrl] = None,
    download_metadata: bool = False,
) -> dict[str, list[str]]:
    """The metadata files (paths or URLs) that ``config`` reads, official URLs filling gaps on request.

    ``audioset`` and ``comparison`` are built on AudioSet strong labels (named via the ontology),
    ``music`` on MusicCaps; files of the other source are not read.
    """
    if config == "music":
        sources = {"musiccaps_csv": as_list(musiccaps_csv)}
        if download_metadata and not sources["musiccaps_csv"]:
            sources["musiccaps_csv"] = [MUSICCAPS_URL]
    else:
        sources = {"strong_labels": as_list(strong_labels), "ontology": as_list(ontology)}
        if download_metadata and not sources["strong_labels"]:
            sources["strong_labels"] = list(STRONG_LABELS_URLS)
        if download_metadata and not sources["ontology"]:
            sources["ontology"] = [ONTOLOGY_URL]
    return {kind: files for kind, files in sources.items() if files}


def open_source_metadata(
    sources: dict[str, list[str]], download: Callable[[list[str]], list[str]] | None = None
) -> SourceMetadata | None:
    """Fetch (URLs, through ``download``: the datasets download manager, so they are cached) and read."""
    if not sources:
        return None
    local: dict[str, list[Path]] = {}
    for kind, files in sources.items():
        urls = [f for f in files if is_url(f)]
        if urls:
            if download is None:
                from datasets import DownloadManager

                download = DownloadManager().download
            fetched = dict(zip(urls, download(urls), strict=False))
        local[kind] = [Path(fetched[f]) if is_url(f) else Path(f) for f in files]
        for path in local[kind]:
            if not path.is_file():
                raise MetadataError(f"{path}: {kind} file does not exist")
    return load_source_metadata(**local)
