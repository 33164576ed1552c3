"""The fetch journal: what happened to every clip, why, and what is still missing.

A download of 100k YouTube clips never fully succeeds: videos get deleted, made private or blocked,
and YouTube throttles. The journal records one outcome per clip and run so that a re-run knows what not
to retry (permanently unavailable) and what to retry (transient), and so that a user can always tell
what is missing and why.

Format: JSON lines under ``<cache>/journal/<host>.jsonl`` (``<host>.shard-I-of-N.jsonl`` for shard I of a
sharded run), appended with one ``write`` per line (atomic for appends on a local file system; one file
per host and shard so machines sharing a network disk never append to the same file). A line torn by a
kill is skipped on read. Journals from several machines merge by reading all their lines: ``ok``
anywhere wins, otherwise the latest outcome does, and attempts add up.

yt-dlp raises removed videos, bot checks and rate limits alike as ``DownloadError``; the outcome is
classified from the HTTP status and the message text (:func:`classify`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import atomic_write, describe_json_error
from ..sources.clips import Clip

OK = "ok"
PERMANENT = "permanent"
TRANSIENT = "transient"
STATUSES = (OK, PERMANENT, TRANSIENT)
#: A clip of the requested set that no journal mentions yet.
PENDING = "pending"

JOURNAL_DIRNAME = "journal"
_MESSAGE_LIMIT = 1000
_MAX_ATTEMPTS = 1_000_000
_MAX_TIME = 1e11  # Unix seconds, year 5138: anything larger is not a time

# Permanent reasons that are a property of the whole video, not of one time window: once one clip of
# a video fails with one of these, the other clips of that video need no request to know the answer.
VIDEO_LEVEL_REASONS = frozenset(
    {"removed", "unavailable", "private", "account_terminated", "copyright", "region", "age_restricted",
     "members_only", "paid", "not_found", "gone", "drm"}
)

# (reason, status, patterns): first match wins, so the specific transient cases that YouTube words like
# permanent ones ("Video unavailable. This content isn't available, try again later") come first.
_MESSAGE_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("bot_check", TRANSIENT, ("not a bot", "captcha", "unusual traffic")),
    ("rate_limited", TRANSIENT, ("try again later", "rate-limited", "rate limited", "too many requests",
                                 "http error 429", "returned 429")),
    ("server_error", TRANSIENT, (r"http error 5\d\d", r"returned 5\d\d", "5xx server error", "service unavailable",
                                 "internal server error", "bad gateway", "gateway time")),
    ("account_terminated", PERMANENT, ("account associated with this video has been terminated",
                                       "closed their youtube account", "account has been terminated")),
    ("copyright", PERMANENT, ("copyright",)),
    ("region", PERMANENT, ("not made this video available in your country", "not available in your country",
                           "geo restrict", "geo-restrict", "blocked it in your country",
                           "not available from your location")),
    ("age_restricted", PERMANENT, ("confirm your age", "age-restricted", "age restricted",
                                   "inappropriate for some users")),
    ("private", PERMANENT, ("private video", "video is private")),
    ("members_only", PERMANENT, ("members-only", "members only", "available to this channel's members",
                                 "join this channel")),
    ("paid", PERMANENT, ("requires payment",)),
    ("drm", PERMANENT, ("drm protected", "drm-protected")),
    ("removed", PERMANENT, ("removed by the uploader", "has been removed", "violating youtube",
                            "no longer available")),
    ("not_found", PERMANENT, ("http error 404", "returned 404", "404 not found")),
    ("gone", PERMANENT, ("http error 410", "returned 410", "410 gone")),
    ("unavailable", PERMANENT, ("video unavailable", "this video is unavailable", "video is not available")),
    ("forbidden", TRANSIENT, ("http error 403", "returned 403", "403 forbidden")),
    ("upcoming", TRANSIENT, ("live event will begin", "premieres in", "premiere will begin")),
    ("network", TRANSIENT, ("timed out", "timeout", "connection refused", "connection reset",
                            "connection aborted", "remote end closed", "name or service not known",
                            "temporary failure in name resolution", "network is unreachable",
                            "no route to host", "incompleteread", "incomplete read", "ssl", "eof occurred",
                            "unable to download webpage", "unable to download video data",
                            "error opening input", "i/o error", "end of file")),
    ("download_failed", TRANSIENT, ("ffmpeg exited with code", "postprocessing", "conversion failed",
                                    "downloaded file is empty", "did not get any data")),
    ("format_unavailable", TRANSIENT, ("requested format is not available", "no video formats found",
                                       "only images are available")),
)
_COMPILED_RULES = tuple(
    (reason, status, tuple(re.compile(p) for p in patterns)) for reason, status, patterns in _MESSAGE_RULES
)


def classify(message: str, http_status: int | None = None) -> tuple[str, str]:
    """Return ``(status, reason)`` for a failed download: ``permanent`` or ``transient`` and a short key.

    The HTTP status decides when the failing request was a plain HTTP one (404/410 permanent; 429, 403,
    5xx transient); otherwise the message text does. Unknown failures are transient: a re-run retries
    them, and nothing is given up on without evidence.
    """
    if http_status is not None:
        if http_status == 404:
            return PERMANENT, "not_found"
        if http_status == 410:
            return PERMANENT, "gone"
        if http_status == 429:
            return TRANSIENT, "rate_limited"
        if http_status == 403:
            # A message can say more (YouTube answers 403 to bot checks and expired media URLs alike).
            status, reason = _classify_text(message)
            return (status, reason) if reason not in ("unknown", "network") else (TRANSIENT, "forbidden")
        if 500 <= http_status < 600:
            return TRANSIENT, "server_error"
    return _classify_text(message)


def _classify_text(message: str) -> tuple[str, str]:
    text = message.lower().replace("\u2019", "'")
    for reason, status, patterns in _COMPILED_RULES:
        if any(p.search(text) for p in patterns):
            return status, reason
    return TRANSIENT, "unknown"


def host_name() -> str:
    """This machine's name, made safe for a file name (journals are per host)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class JournalEntry:
    """One clip's outcome in one fetch run (``attempts`` counts the downloads tried in that run).

    ``id`` names the entry, so that it counts once however often it is read: in two copies of a journal,
    or both in its own file and inside a merged line (``covers``: entry id -> attempts of every entry a
    line written by :func:`write_merged` stands for).
    """

    key: str
    ytid: str
    start_s: float | None
    end_s: float | None
    status: str
    reason: str = ""
    message: str = ""
    attempts: int = 0
    time: float = field(default_factory=time.time)
    host: str = field(default_factory=host_name)
    #: For ``ok``: the cached file (relative to the cache) and, when the source ended early, how much
    #: shorter the clip is than requested.
    file: str = ""
    short_by_s: float = 0.0
    id: str = field(default_factory=_new_id)
    covers: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_clip(cls, clip: Clip, status: str, **fields: object) -> JournalEntry:
        return cls(key=clip.key, ytid=clip.ytid, start_s=clip.start_s, end_s=clip.end_s, status=status,
                   **fields)  # type: ignore[arg-type]

    @property
    def clip(self) -> Clip:
        return Clip(self.ytid, self.start_s, self.end_s)

    def to_line(self) -> str:
        data = asdict(self)
        data["message"] = data["message"][:_MESSAGE_LIMIT]
        if not data["covers"]:
            del data["covers"]
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> JournalEntry:
        """The entry ``data`` describes; :class:`ValueError` saying which field is wrong if it is none.

        Every field is checked here, so that a line edited by hand is refused on reading instead of
        failing later inside a merge or a report.
        """
        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object but {type(data).__name__} {_short(data)}")
        if data.get("status") not in STATUSES:
            raise ValueError(f"status {_short(data.get('status'))} is not one of {', '.join(STATUSES)}")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for name in ("key", "ytid"):
            if not isinstance(known.get(name), str):
                raise ValueError(f"{name} {_short(known.get(name))} is not a string")
        for name in ("reason", "message", "host", "file", "id"):
            if name in known and not isinstance(known[name], str):
                raise ValueError(f"{name} {_short(known[name])} is not a string")
        for name in ("start_s", "end_s"):
            if known.get(name) is not None and not _is_number(known[name]):
                raise ValueError(f"{name} {_short(known[name])} is not a number or null")
        if "attempts" in known and not (_is_int(known["attempts"]) and 0 <= known["attempts"] <= _MAX_ATTEMPTS):
            raise ValueError(f"attempts {_short(known['attempts'])} is not a count")
        if "time" in known and not (_is_number(known["time"]) and 0 <= known["time"] <= _MAX_TIME):
            raise ValueError(f"time {_short(known['time'])} is not a Unix time")
        if "short_by_s" in known and not (_is_number(known["short_by_s"]) and known["short_by_s"] >= 0):
            raise ValueError(f"short_by_s {_short(known['short_by_s'])} is not a non-negative number")
        covers = known.get("covers", {})
        if not isinstance(covers, dict) or not all(
                isinstance(k, str) and _is_int(v) and 0 <= v <= _MAX_ATTEMPTS for k, v in covers.items()):
            raise ValueError(f"covers {_short(covers)} is not an object of entry ids to attempts")
        clip = Clip(known["ytid"], known.get("start_s"), known.get("end_s"))  # ClipError is a ValueError
        if clip.key != known["key"]:
            raise ValueError(f"key {known['key']!r} does not match its ytid and times ({clip.key!r})")
        if "id" not in known:
            # Written before entries had ids: the fields that told such entries apart.
            known["id"] = "{}@{}/{}/{}".format(known.get("host", ""), known.get("time", ""), known["status"],
                                               known.get("attempts", 0))
        return cls(**known)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if _jsonable(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


class FetchJournal:
    """An append-only JSON-lines journal of fetch attempts, one file per host (not
    :class:`~audio_dialogues.llm.journal.Journal`, which keeps an LLM's answers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, entry: JournalEntry) -> None:
        self.append_many([entry])

    def append_many(self, entries: Iterable[JournalEntry]) -> None:
        data = "".join(e.to_line() for e in entries).encode("utf-8")
        if not data:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # A kill can leave a torn last line; start on a fresh line so it costs only that line.
            if os.fstat(fd).st_size and not _ends_with_newline(self.path):
                data = b"\n" + data
            os.write(fd, data)
        finally:
            os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def journal_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / JOURNAL_DIRNAME


def host_journal(cache_dir: str | Path, shard_index: int = 0, num_shards: int = 1) -> FetchJournal:
    """This host's journal in ``cache_dir``; a sharded run's is its shard's: ``<host>.shard-I-of-N.jsonl``.

    Per shard, because the tasks of a SLURM array often share a node (one host name) and a network disk:
    each then appends to its own file, and ``status`` can tell which shards have run.
    """
    name = host_name() + (f".shard-{shard_index}-of-{num_shards}" if num_shards > 1 else "")
    return FetchJournal(journal_dir(cache_dir) / f"{name}.jsonl")


_SHARD_NAME = re.compile(r"\.shard-([0-9]+)-of-([0-9]+)\.jsonl$")


def journal_shard(path: str | Path) -> tuple[int, int] | None:
    """``(shard index, number of shards)`` of a journal a sharded run wrote (see :func:`host_journal`)."""
    found = _SHARD_NAME.search(Path(path).name)
    if found is None:
        return None
    index, count = int(found[1]), int(found[2])
    return (index, count) if 0 <= index < count else None


def journal_files(cache_dir: str | Path) -> list[Path]:
    """Every host's journal in ``cache_dir`` (a cache shared or merged from several machines has many)."""
    folder = journal_dir(cache_dir)
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


@dataclass
class ReadStats:
    """Lines read, and the lines skipped because they are not journal entries (torn by a kill, edited)."""

    lines: int = 0
    bad_lines: int = 0
    #: ``file:line: what is wrong``, for the first :data:`BAD_LINE_EXAMPLES` skipped lines.
    examples: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        self.bad_lines += 1
        if len(self.examples) < BAD_LINE_EXAMPLES:
            self.examples.append(f"{where}: {why}")

    def describe(self) -> str:
        """One paragraph for a user: how many lines were skipped and where the first ones are."""
        if not self.bad_lines:
            return ""
        more = self.bad_lines - len(self.examples)
        return "\n".join([
            f"{self.bad_lines} journal line(s) skipped: not entries this fetcher wrote (torn by a kill, or "
            "edited by hand); each was ignored, nothing else is affected",
            *(f"  {e}" for e in self.examples), *([f"  ... and {more} more"] if more > 0 else [])])


BAD_LINE_EXAMPLES = 10


def read_entries(paths: Iterable[str | Path], stats: ReadStats | None = None) -> Iterator[JournalEntry]:
    """Entries of the given journal files; any line that is not one is skipped and counted in ``stats``.

    Nothing in a journal can stop a read: a torn line, a number, ``null``, a list, a field of the wrong
    type, bytes that are not UTF-8, a file that cannot be opened. Each is counted with its file and line.
    """
    stats = stats if stats is not None else ReadStats()
    for path in paths:
        try:
            f = open(path, encoding="utf-8", errors="replace")
        except OSError as err:
            stats.skip(str(path), f"cannot read: {err.strerror or err}")
            continue
        with f:
            lineno = 0
            while True:
                try:
                    line = f.readline()
                except OSError as err:  # e.g. a folder named like a journal
                    stats.skip(f"{path}:{lineno + 1}", f"cannot read: {err.strerror or err}")
                    break
                if not line:
                    break
                lineno += 1
                if lineno == 1:
                    line = line.lstrip("\ufeff")
                if not line.strip():
                    continue
                stats.lines += 1
                try:
                    yield JournalEntry.from_dict(json.loads(line))
                except json.JSONDecodeError as err:
                    stats.skip(f"{path}:{lineno}", f"not JSON ({describe_json_error(err)})")
                except RecursionError:
                    stats.skip(f"{path}:{lineno}", "JSON nested too deeply")
                except (ValueError, TypeError) as err:
                    stats.skip(f"{path}:{lineno}", str(err))


@dataclass
class ClipState:
    """A clip's merged state over all journal entries (all runs, all machines)."""

    latest: JournalEntry
    #: Attempts of every entry counted for this clip, by entry id (so none counts twice).
    attempts_by_entry: dict[str, int] = field(default_factory=dict)

    @property
    def attempts(self) -> int:
        return sum(self.attempts_by_entry.values())

    @property
    def runs(self) -> int:
        return len(self.attempts_by_entry)

    @property
    def status(self) -> str:
        return self.latest.status

    @property
    def reason(self) -> str:
        return self.latest.reason


@dataclass
class JournalState:
    """The merged journal: per clip key the state that counts, plus per video its permanent failure."""

    clips: dict[str, ClipState] = field(default_factory=dict)
    video_failures: dict[str, JournalEntry] = field(default_factory=dict)
    stats: ReadStats = field(default_factory=ReadStats)

    def get(self, clip: Clip) -> ClipState | None:
        return self.clips.get(clip.key)

    def video_failure(self, ytid: str) -> JournalEntry | None:
        """The latest video-level permanent failure of ``ytid`` (removed, private, ...), if any."""
        return self.video_failures.get(ytid)


def _wins(new: JournalEntry, old: JournalEntry) -> bool:
    # ok anywhere wins (a machine with cookies got it); between equals the latest outcome counts.
    if (new.status == OK) != (old.status == OK):
        return new.status == OK
    return (new.time, new.host) >= (old.time, old.host)


def merge(entries: Iterable[JournalEntry], stats: ReadStats | None = None) -> JournalState:
    """Merge entries from any number of runs and machines (an entry read twice, or also through a merged
    line that covers it, counts once)."""
    state = JournalState(stats=stats or ReadStats())
    for entry in entries:
        current = state.clips.get(entry.key)
        if current is None:
            current = state.clips[entry.key] = ClipState(entry)
        elif _wins(entry, current.latest):
            current.latest = entry
        current.attempts_by_entry.update(entry.covers or {entry.id: entry.attempts})
    for clip_state in state.clips.values():
        entry = clip_state.latest
        if entry.status == PERMANENT and entry.reason in VIDEO_LEVEL_REASONS:
            known = state.video_failures.get(entry.ytid)
            if known is None or entry.time > known.time:
                state.video_failures[entry.ytid] = entry
    # A video some clip of which was fetched is not gone as a whole (e.g. re-uploaded, or cookies helped).
    for clip_state in state.clips.values():
        if clip_state.status == OK:
            state.video_failures.pop(clip_state.latest.ytid, None)
    return state


def load(cache_dir: str | Path, extra: Iterable[str | Path] = ()) -> JournalState:
    """The merged state of every journal in ``cache_dir`` plus any ``extra`` journal files."""
    stats = ReadStats()
    paths = [*journal_files(cache_dir), *(Path(p) for p in extra)]
    return merge(read_entries(paths, stats), stats)


def write_merged(state: JournalState, out: str | Path) -> int:
    """Write one line per clip (its winning entry, attempts summed) to ``out``; returns the count.

    For shipping a compact journal between machines; ``out`` is replaced atomically.
    """
    with atomic_write(out) as f:
        for key in sorted(state.clips):
            s = state.clips[key]
            data = asdict(s.latest)
            data.update(attempts=s.attempts, covers=dict(s.attempts_by_entry))
            f.write(JournalEntry.from_dict(data).to_line())
    return len(state.clips)


@dataclass
class Summary:
    """Counts by status and by ``(status, reason)``, and the clips that are not ``ok``."""

    total: int
    by_status: Counter
    by_reason: Counter
    #: ``(clip, status, reason, merged journal state or None)`` of every clip that is not ok.
    missing: list[tuple[Clip, str, str, ClipState | None]]

    def lines(self) -> list[str]:
        out = [f"{self.total} clips"]
        for status in (OK, PERMANENT, TRANSIENT, PENDING):
            if self.by_status.get(status):
                out.append(f"  {status:<10} {self.by_status[status]}")
                for (s, reason), n in sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
                    if s == status and reason:
                        out.append(f"    {reason:<20} {n}")
        return out


def summarize(state: JournalState, clips: Iterable[Clip] | None = None,
              is_cached: Callable[[Clip], bool] | None = None) -> Summary:
    """Summarise ``state``; with ``clips``, over exactly those clips (``is_cached`` says which are ok).

    A requested clip that is in the cache counts as ok whatever the journal says (the cache is the
    truth for a shared or merged cache); one no journal mentions is ``pending``.
    """
    by_status: Counter = Counter()
    by_reason: Counter = Counter()
    missing: list[tuple[Clip, str, str, ClipState | None]] = []
    items: list[tuple[Clip, ClipState | None]]
    if clips is None:
        items = [(s.latest.clip, s) for s in state.clips.values()]
    else:
        unique = {c.key: c for c in clips}
        items = [(c, state.clips.get(k)) for k, c in unique.items()]
    for clip, clip_state in items:
        if is_cached is not None and is_cached(clip):
            status, reason = OK, ""
        elif clip_state is not None:
            status, reason = clip_state.status, clip_state.reason
            if clips is not None and status == OK:
                status, reason = PENDING, "not_in_cache"
        else:
            failure = state.video_failure(clip.ytid)
            status, reason = (PERMANENT, failure.reason) if failure else (PENDING, "")
        by_status[status] += 1
        by_reason[(status, reason)] += 1
        if status != OK:
            missing.append((clip, status, reason, clip_state))
    return Summary(len(items), by_status, by_reason, missing)


MISSING_COLUMNS = ("ytid", "start_s", "end_s", "key", "status", "reason", "attempts", "last_attempt", "host",
                   "message")


def write_missing_csv(summary: Summary, out: str | Path) -> int:
    """Write the clips that are not ok as CSV (``ytid,start_s,end_s,...``); returns the row count.

    The first three columns name the clip as the annotations do (YouTube id and window in seconds).
    """
    with atomic_write(out) as f:
        writer = csv.writer(f)
        writer.writerow(MISSING_COLUMNS)
        for clip, status, reason, clip_state in summary.missing:
            latest = clip_state.latest if clip_state else None
            writer.writerow([
                clip.ytid, clip.start_s, clip.end_s, clip.key, status, reason,
                clip_state.attempts if clip_state else 0,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(latest.time)) if latest else "",
                latest.host if latest else "", latest.message if latest else "",
            ])
    return len(summary.missing)


PRESENT_COLUMNS = ("ytid", "start_s", "end_s", "key", "found_in", "path")


def write_present_csv(clips: Iterable[Clip], present: dict[str, tuple[str, str]], out: str | Path) -> int:
    """Write the clips that have audio as CSV, each with where it was found (``audio_dir``, ``release_folder``
    or ``cache``, see :func:`~audio_dialogues.sources.records.where_found`)."""
    rows = 0
    with atomic_write(out) as f:
        writer = csv.writer(f)
        writer.writerow(PRESENT_COLUMNS)
        for clip in {c.key: c for c in clips}.values():
            if clip.key in present:
                where, path = present[clip.key]
                writer.writerow([clip.ytid, clip.start_s, clip.end_s, clip.key, where, path])
                rows += 1
    return rows
