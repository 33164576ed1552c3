"""Source metadata: where release-shape records get their clip times, sound events and captions.

The authors' release names audio files (``Y<ytid>.wav``) but not the YouTube time window. The window,
and the labels the dialogues were generated from, live in the source datasets' own metadata:

- AudioSet strong labels (TSV: ``segment_id, start_time_seconds, end_time_seconds, label``), one row per
  sound event; ``segment_id`` is ``<11-char ytid>_<start ms>``, event times are relative to the clip.
  The framed file (``audioset_eval_strong_framed_posneg.tsv``) adds a ``present`` column;
- the MusicCaps CSV (``ytid, start_s, end_s, audioset_positive_labels, aspect_list, caption, ...``);
- the AudioSet ontology (JSON list of ``{"id": "/m/..", "name": ...}``), to name strong-label classes.

Each file may be a local path or a URL (fetched and cached by the `datasets` download manager).
"""

from __future__ import annotations

import ast
import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import AudioDialoguesError, reason
from ..files import csv_rows, describe_os_error, input_problem, load_json, open_input
from .clips import AUDIOSET_SEGMENT_S, Clip, ClipError

#: Official locations, used when ``download_metadata=True`` and no file is given.
STRONG_LABELS_URLS = (
    "http://storage.googleapis.com/us_audioset/youtube_corpus/strong/audioset_train_strong.tsv",
    "http://storage.googleapis.com/us_audioset/youtube_corpus/strong/audioset_eval_strong.tsv",
)

ONTOLOGY_URL = "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"
#: The strong-label release's own class names: it labels some classes ontology.json does not list.
CLASS_NAMES_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/strong/mid_to_display_name.tsv"
MUSICCAPS_URL = "https://huggingface.co/datasets/google/MusicCaps/resolve/main/musiccaps-public.csv"
#: Seconds one metadata download may take from its request to its last byte (the largest official file,
#: the strong labels' train TSV, is tens of MB).
METADATA_TIMEOUT_S = 600.0

PathOrUrl = str | Path
#: The columns of each published strong-label TSV shape: the event lists (``audioset_train_strong.tsv``,
#: ``audioset_eval_strong.tsv``) and the framed one (``audioset_eval_strong_framed_posneg.tsv``), whose
#: rows are 0.96 s frames that say whether a label is ``PRESENT`` or ``NOT_PRESENT`` in that frame.
STRONG_LABELS_HEADER = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
STRONG_LABELS_POSNEG_HEADER = (*STRONG_LABELS_HEADER, "present")
PRESENCE_VALUES = {"PRESENT": True, "NOT_PRESENT": False}
#: Event times may overshoot the 10 s clip by this much (rounding in the published files).
EVENT_TIME_TOLERANCE_S = 0.05
MUSICCAPS_COLUMNS = ("ytid", "start_s", "end_s", "aspect_list", "caption")
#: What to do about a bad row, the same for every row error.
FIX_LINE = "; fix or remove the line"
FIX_CLASS = "; fix the class, or pass the published ontology.json"


class MetadataError(AudioDialoguesError, ValueError):
    """A source metadata file that cannot be read; the message names the file, the row and the problem."""


class SoundEvent(NamedTuple):
    """One strong-label event (a named tuple: a full train file holds about a million of them)."""

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
    #: MusicCaps' own test flag (its clips are in AudioSet's eval set).
    is_audioset_eval: bool = False
    #: ``file:line`` of the row, to name both rows when a clip is listed twice.
    origin: str = field(default="", compare=False)


@dataclass
class SourceMetadata:
    """Clip windows and labels by YouTube id, merged from any number of source files."""

    #: ytid -> {start ms -> (clip, events)}; a ytid may have several strong-label segments.
    strong: dict[str, dict[int, tuple[Clip, list[SoundEvent]]]] = field(default_factory=dict)
    music: dict[str, MusicCapsEntry] = field(default_factory=dict)
    #: MusicCaps rows that repeat an earlier row of the same clip exactly: kept once, listed here to be counted.
    music_repeats: list[MusicCapsEntry] = field(default_factory=list)
    label_names: dict[str, str] = field(default_factory=dict)
    #: ontology class name -> names of its direct sub-classes (what "Speech" counts in the paper's shares)
    class_children: dict[str, list[str]] = field(default_factory=dict)

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


def _number(where: str, column: str, text: str) -> float:
    """A finite number from a text field, or an error naming the field and its value."""
    try:
        value = float(text)
    except ValueError:
        raise MetadataError(f"{where}: {column} {text[:40]!r} is not a number{FIX_LINE}") from None
    if not math.isfinite(value):
        raise MetadataError(f"{where}: {column} {text[:40]!r} is not a finite number{FIX_LINE}")
    return value


def _header(where: str, found: list[str], shapes: Sequence[tuple[str, ...]], what: str) -> tuple[str, ...]:
    """The header as one of the published ``shapes``, else an error naming the odd columns."""
    header = tuple(h.strip() for h in found)
    if header in shapes:
        return header
    known = {c for shape in shapes for c in shape}
    unexpected = [c for c in header if c not in known]
    missing = [c for c in shapes[0] if c not in header]
    described = " or ".join("\t".join(shape) for shape in shapes).replace("\t", ", ")
    problems = []
    if unexpected:
        problems.append(f"unexpected columns {unexpected}")
    if missing:
        problems.append(f"missing columns {missing}")
    if not problems:
        problems.append(f"columns {list(header)} in an unexpected order")
    raise MetadataError(f"{where}: not {what}: {'; '.join(problems)}. Expected the header {described}")


def read_strong_labels(path: Path, into: SourceMetadata | None = None) -> SourceMetadata:
    """Read an AudioSet strong-label TSV, either published shape; the ytid is the first 11 characters of ``segment_id``.

    Event times are relative to the 10 s clip and must lie within it. In the framed posneg shape only
    ``PRESENT`` frames are events, and consecutive frames of one label merge into one event; a segment
    whose frames are all ``NOT_PRESENT`` is still known (its window), with no events.
    """
    meta = into if into is not None else SourceMetadata()
    rows = csv_rows(path, MetadataError, delimiter="\t", quoting=csv.QUOTE_NONE)
    first = next(rows, None)
    if first is None:
        raise MetadataError(f"{path}: empty file; expected the header {', '.join(STRONG_LABELS_HEADER)}")
    header = _header(f"{path}:{first[0]}", first[1], (STRONG_LABELS_HEADER, STRONG_LABELS_POSNEG_HEADER),
                     "an AudioSet strong-label TSV")
    framed = header == STRONG_LABELS_POSNEG_HEADER
    # segment_id -> where its events go: parsed once per segment, not once per row. Frames of the framed
    # shape collect apart, so that joining them never touches events another file gave the segment.
    segments: dict[str, list[SoundEvent]] = {}
    frames: dict[str, list[SoundEvent]] = {}
    columns, low, high = len(header), -EVENT_TIME_TOLERANCE_S, AUDIOSET_SEGMENT_S + EVENT_TIME_TOLERANCE_S
    for line, row in rows:  # a million rows: the place of each row is only formatted for an error
        if len(row) != columns:
            raise MetadataError(f"{path}:{line}: expected {columns} tab-separated fields ({', '.join(header)}), "
                                f"got {len(row)}{FIX_LINE}")
        segment_id, start_text, end_text, label = row[:4]
        events = segments.get(segment_id)
        if events is None:
            try:
                clip = Clip.from_segment_id(segment_id)
            except (ClipError, ValueError) as e:
                raise MetadataError(f"{path}:{line}: segment_id: {e}{FIX_LINE}") from None
            assert clip.start_s is not None  # a segment id always carries its start
            start_ms = round(clip.start_s * 1000)
            segments[segment_id] = meta.strong.setdefault(clip.ytid, {}).setdefault(start_ms, (clip, []))[1]
            events = segments[segment_id]
        if framed:
            events = frames.setdefault(segment_id, [])
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            start, end = 0.0, math.nan  # _number below says which field is not a number
        if not low <= start <= end <= high:  # also false for NaN and infinities
            where = f"{path}:{line}"
            start = _number(where, "start_time_seconds", start_text)
            end = _number(where, "end_time_seconds", end_text)
            raise MetadataError(
                f"{where}: event times {start:g}..{end:g} s do not lie within the {AUDIOSET_SEGMENT_S:g} s clip "
                f"(times are relative to the clip start, start before end){FIX_LINE}")
        if not label or label.isspace():
            raise MetadataError(f"{path}:{line}: label is empty{FIX_LINE}")
        if framed:
            present = PRESENCE_VALUES.get(row[4].strip())
            if present is None:
                raise MetadataError(f"{path}:{line}: present {row[4][:40]!r} is neither PRESENT nor NOT_PRESENT"
                                    f"{FIX_LINE}")
            if not present:
                continue
        events.append(SoundEvent(label, start, end))
    for segment_id, present_frames in frames.items():
        segments[segment_id].extend(_merge_frames(present_frames))
    return meta


def _merge_frames(events: list[SoundEvent]) -> list[SoundEvent]:
    """Join frames of one label that touch or overlap into one event, ordered by start time."""
    merged: list[SoundEvent] = []
    open_by_label: dict[str, int] = {}
    for event in sorted(events, key=lambda e: (e.start_s, e.end_s, e.label)):
        i = open_by_label.get(event.label)
        if i is not None and event.start_s <= merged[i].end_s + 1e-6:
            merged[i] = SoundEvent(event.label, merged[i].start_s, max(merged[i].end_s, event.end_s))
        else:
            open_by_label[event.label] = len(merged)
            merged.append(event)
    return merged


def read_ontology(path: Path, into: SourceMetadata | None = None) -> SourceMetadata:
    """Read the AudioSet ontology (a JSON list of classes): its ``id`` -> ``name`` mapping and its hierarchy."""
    meta = into if into is not None else SourceMetadata()
    children: dict[str, list[str]] = {}
    classes = load_json(path, MetadataError)
    if not isinstance(classes, list):
        raise MetadataError(f"{path}: not an AudioSet ontology: expected a JSON list of {{'id', 'name'}} "
                            f"classes, got a {type(classes).__name__}")
    names = {}
    for index, c in enumerate(classes):
        where = f"{path}[{index}]"
        if not isinstance(c, dict):
            raise MetadataError(f"{where}: a class must be an object with 'id' and 'name', got {type(c).__name__}"
                                f"{FIX_CLASS}")
        for key in ("id", "name"):
            if not isinstance(c.get(key), str) or not c[key].strip():
                raise MetadataError(f"{where}: {key} must be a non-empty string, got {c.get(key)!r:.60}{FIX_CLASS}")
        kids = c.get("child_ids", [])
        if not isinstance(kids, list) or not all(isinstance(k, str) for k in kids):
            raise MetadataError(f"{where}: child_ids must be a list of class ids, got {kids!r:.60}{FIX_CLASS}")
        names[c["id"]] = c["name"]
        children[c["name"]] = kids
    meta.label_names.update(names)
    for name, kids in children.items():
        meta.class_children[name] = [meta.label_names[k] for k in kids if k in meta.label_names]
    return meta


def read_class_names(path: Path, into: SourceMetadata | None = None) -> SourceMetadata:
    """Read ``mid_to_display_name.tsv`` of the strong-label release: ``<class id>\t<name>`` lines, no header.

    The strong labels use classes that ontology.json does not list; this file names every one of them.
    """
    meta = into if into is not None else SourceMetadata()
    for line, row in csv_rows(path, MetadataError, delimiter="\t", quoting=csv.QUOTE_NONE):
        if len(row) != 2 or not row[0].startswith("/") or not row[1].strip():
            raise MetadataError(f"{path}:{line}: expected '<class id>\\t<name>' (e.g. '/m/09x0r\\tSpeech') as in "
                                f"the strong-label release's mid_to_display_name.tsv, got {row!r:.80}{FIX_LINE}")
        meta.label_names[row[0]] = row[1].strip()
    return meta


def read_class_names_or_ontology(path: Path, into: SourceMetadata | None = None) -> SourceMetadata:
    """An ``--ontology`` file: ontology.json, or mid_to_display_name.tsv (told apart by content: cached
    downloads have no file extension)."""
    try:
        with open_input(path, MetadataError) as f:
            start = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as e:
        raise MetadataError(describe_os_error(path, e)) from None
    return (read_ontology if start[:1] in (b"[", b"{", b"") else read_class_names)(path, into)


def _parse_aspects(where: str, text: str) -> tuple[str, ...]:
    """MusicCaps stores aspects as a Python list literal (``"['a', 'b']"``); parse it without eval."""
    if not text.strip():
        return ()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise MetadataError(f"{where}: aspect_list {text[:60]!r} is not a list literal like \"['calm', 'piano']\" "
                            f"({type(e).__name__}: {e}){FIX_LINE}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise MetadataError(f"{where}: aspect_list {text[:60]!r} is not a list of strings{FIX_LINE}")
    return tuple(value)


_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "": False}


def read_musiccaps(path: Path, into: SourceMetadata | None = None) -> SourceMetadata:
    """Read the MusicCaps CSV; a clip listed twice must be listed identically (else both rows are named)."""
    meta = into if into is not None else SourceMetadata()
    rows = csv_rows(path, MetadataError)
    first = next(rows, None)
    if first is None:
        raise MetadataError(f"{path}: empty file; expected a header with {', '.join(MUSICCAPS_COLUMNS)}")
    header = [h.strip() for h in first[1]]
    missing = [c for c in MUSICCAPS_COLUMNS if c not in header]
    if missing:
        raise MetadataError(f"{path}:{first[0]}: MusicCaps CSV lacks the columns {missing} (header: {header})")
    column = {name: i for i, name in reversed(list(enumerate(header)))}
    for line, row in rows:
        where = f"{path}:{line}"
        if len(row) != len(header):
            raise MetadataError(f"{where}: expected {len(header)} comma-separated fields ({', '.join(header)}), "
                                f"got {len(row)}; quote a field that holds a comma, or fix the short row")
        value = {name: row[i] for name, i in column.items()}
        try:
            clip = Clip(value["ytid"], _number(where, "start_s", value["start_s"]),
                        _number(where, "end_s", value["end_s"]))
        except ClipError as e:
            raise MetadataError(f"{where}: {e}{FIX_LINE}") from None
        eval_flag = _BOOLEANS.get(value.get("is_audioset_eval", "").strip().lower())
        if eval_flag is None:
            raise MetadataError(f"{where}: is_audioset_eval {value['is_audioset_eval'][:40]!r} is not True or False"
                                f"{FIX_LINE}")
        entry = MusicCapsEntry(clip, value["caption"], _parse_aspects(where, value["aspect_list"]), eval_flag, where)
        earlier = meta.music.get(clip.ytid)
        if earlier is not None and earlier != entry:
            raise MetadataError(
                f"{where}: ytid {clip.ytid} is listed twice, differently: {earlier.origin} "
                f"[{earlier.clip.start_s:g}s, {earlier.clip.end_s:g}s) and {where} [{clip.start_s:g}s, "
                f"{clip.end_s:g}s). A release record names only the video, so which window it means would be "
                "a guess: keep one of the rows")
        if earlier is None:
            meta.music[clip.ytid] = entry
        else:
            meta.music_repeats.append(entry)
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
        read_class_names_or_ontology(path, meta)
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
            sources["ontology"] = [ONTOLOGY_URL, CLASS_NAMES_URL]
    return {kind: files for kind, files in sources.items() if files}


def metadata_download(dataset_name: str | None = None,
                      timeout_s: float = METADATA_TIMEOUT_S) -> Callable[[list[str]], list[str]]:
    """The datasets download manager's ``download`` (cached), each http(s) download bounded as a whole.

    fsspec's HTTP filesystem reads through aiohttp, whose default timeouts are per read: a server that
    trickles its answer would hold a load forever. ``total`` bounds the whole request (the package's one
    HTTP timeout policy; see :func:`audio_dialogues.llm.client.bounded`). URLs on the Hub
    (``hf://``, ``huggingface.co/.../resolve/``) go through huggingface_hub, bounded by
    :func:`audio_dialogues.hub_http.install`.
    """
    import aiohttp
    from datasets import DownloadConfig, DownloadManager

    from ..hub_http import install

    install()

    http = {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=timeout_s)}}
    config = DownloadConfig(storage_options={"http": http, "https": http})
    manager = DownloadManager(dataset_name=dataset_name, download_config=config)

    def download(urls: list[str]) -> list[str]:
        paths = []
        for url in urls:
            try:
                paths.append(manager.download(url))
            except AudioDialoguesError:
                raise
            except TimeoutError:
                raise MetadataError(f"{url}: no whole answer within {timeout_s:g} s") from None
        return paths

    return download


def _download(url: str, kind: str, download: Callable[[list[str]], list[str]]) -> str:
    """``url`` fetched into the datasets cache; a :class:`MetadataError` naming it and why not (status, refusal)."""
    try:
        return download([url])[0]
    except AudioDialoguesError:
        raise
    except Exception as err:  # datasets, fsspec, aiohttp, huggingface_hub (offline mode): a foreign type
        raise MetadataError(f"{url}: the {kind} file could not be downloaded: {reason(err, leave_out=url)}") from err


def open_source_metadata(
    sources: dict[str, list[str]], download: Callable[[list[str]], list[str]] | None = None
) -> SourceMetadata | None:
    """Fetch (URLs, through ``download``, by default :func:`metadata_download`) and read."""
    if not sources:
        return None
    local: dict[str, list[Path]] = {}
    for kind, files in sources.items():
        urls = [f for f in files if is_url(f)]
        if urls:
            download = download or metadata_download()
            fetched = {url: _download(url, kind, download) for url in urls}
        local[kind] = [Path(fetched[f]) if is_url(f) else Path(f) for f in files]
        for path in local[kind]:
            if problem := input_problem(path):
                raise MetadataError(f"{path}: {kind} file {problem}")
    return load_source_metadata(**local)
