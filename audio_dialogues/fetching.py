"""Download clips into the clip cache: yt-dlp time-range downloads, verified, locked, resumable.

For each clip, yt-dlp (its Python API, never a shell) resolves the video and has ffmpeg read only the
requested window (``download_ranges`` with ``force_keyframes_at_cuts``: the cut is decoded and re-encoded,
so it starts at the exact sample, not at the nearest keyframe), starting one second early and trimming
on the decoded side (exact on ffmpeg 5 and 9 alike). ffmpeg's HTTP input gets ``-reconnect`` options so a
dropped connection resumes at the right byte instead of ending the clip early. The audio extraction is
ffmpeg's output stage of that same pass: video dropped, the final codec, rate and channel count written
straight from the decoded source. (yt-dlp's separate ``FFmpegExtractAudio`` post-processor would first
store the source codec, a second lossy encode for AAC/Opus, then spend an ffprobe and a second ffmpeg
run per clip, about a third of the CPU of a clip, to convert it.)

Safety, per clip:

* a file lock (``filelock``; works across processes and, on a shared disk, across machines) means one
  writer per clip; a second process waits and reuses the result;
* everything is written inside a hidden temporary folder next to the final name, decoded and checked
  (:mod:`.verification`), and only then renamed into place (atomic on one file system), then recorded
  (:mod:`.clip_cache`); a kill at any point leaves no partial file under a final name;
* the outcome (ok, permanently unavailable, transient failure, with the message and attempts) goes to
  the journal (:mod:`.journal`) as soon as it is known.

Runs are resumable: verified clips are skipped by a stat, permanent failures are not retried unless
asked, transient ones are retried with exponential backoff and jitter. Work is split across machines by
``num_shards``/``shard_index`` (by video, so every clip of a video and what is learnt about it stays on
one machine).
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from . import clip_cache, journal
from .clips import Clip
from .verification import Verdict, VerificationError, check_clip, decode_facts

YOUTUBE_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"

#: Outcome statuses of one clip in one run.
OK = journal.OK
SKIPPED = "skipped"  # already cached and verified before this run looked at it
PERMANENT = journal.PERMANENT
TRANSIENT = journal.TRANSIENT
PENDING = journal.PENDING  # not attempted (the run was interrupted)

_CODECS = {"flac": ("flac", "flac"), "wav": ("pcm_s16le", "wav")}
# Input options for ffmpeg's HTTP reader: resume after a dropped connection or network error from the
# current byte (without them a drop mid-transfer yields a short clip that ffmpeg reports as success),
# and give up on a stalled connection after 30 s instead of hanging a worker forever.
#: ffmpeg is asked for this much audio before the clip and drops it by timestamp after decoding. Input
#: seeking alone is sample-exact in ffmpeg 5 but lands up to ~20 ms late on AAC in ffmpeg 9 (the build
#: imageio-ffmpeg ships); decoding from a second earlier and trimming on the output side is exact in both.
PREROLL_S = 1.0
FFMPEG_INPUT_ARGS = ("-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_on_network_error", "1",
                     "-reconnect_delay_max", "10", "-rw_timeout", "30000000")


class FetchError(RuntimeError):
    """The fetcher cannot run at all (no ffmpeg, bad options)."""


class FetchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fetch_clips`; carries the report of what was finished before it."""

    def __init__(self, report: FetchReport) -> None:
        super().__init__("fetch interrupted")
        self.report = report


@dataclass
class FetchOptions:
    """How to fetch. Defaults suit YouTube: FLAC, mono, 16 kHz, 4 workers, 3 attempts per run."""

    #: URL of a video; ``{ytid}`` is replaced by the YouTube id. Tests point this at 127.0.0.1.
    url_template: str = YOUTUBE_URL_TEMPLATE
    #: Output sample rate in Hz; ``None`` keeps the source's rate.
    sample_rate: int | None = 16000
    #: Output channels; ``None`` keeps the source's.
    channels: int | None = 1
    format: str = "flac"
    workers: int = 4
    #: Seconds each worker waits before each download (be gentle with YouTube).
    sleep: float = 0.0
    #: At most this many downloads start per second, all workers together (``None``: no limit).
    rate_limit: float | None = None
    #: A Netscape cookies file (for age-restricted videos and bot checks), passed to yt-dlp.
    cookies: str | Path | None = None
    proxy: str | None = None
    #: Also retry clips the journal records as permanently unavailable.
    retry_failed: bool = False
    #: Downloads tried per clip and run before a transient failure is left for the next run.
    max_attempts: int = 3
    #: First backoff after a transient failure; doubled per attempt, times a random factor in [0.5, 1.5).
    backoff_s: float = 2.0
    backoff_max_s: float = 120.0
    #: Accepted difference between the decoded and the requested duration.
    tolerance_s: float = 0.05
    socket_timeout_s: float = 30.0
    #: Split the clips by video into this many disjoint shards and fetch only ``shard_index``.
    num_shards: int = 1
    shard_index: int = 0
    #: The ffmpeg binary; ``None`` finds one (PATH, then the one imageio-ffmpeg ships).
    ffmpeg: str | None = None
    #: Decode every cached clip again instead of trusting its verification record (slow, paranoid).
    reverify: bool = False

    def __post_init__(self) -> None:
        if self.format not in clip_cache.FORMATS:
            raise ValueError(f"format must be one of {clip_cache.FORMATS}, got {self.format!r}")
        if "{ytid}" not in self.url_template:
            raise ValueError(f"url_template must contain {{ytid}}, got {self.url_template!r}")
        try:
            self.url_template.format(ytid="x" * 11)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"url_template {self.url_template!r} has a placeholder other than {{ytid}}") from err
        if self.sample_rate is not None and (not isinstance(self.sample_rate, int) or self.sample_rate <= 0):
            raise ValueError(f"sample_rate must be a positive integer or None, got {self.sample_rate!r}")
        if self.channels is not None and (not isinstance(self.channels, int) or self.channels <= 0):
            raise ValueError(f"channels must be a positive integer or None, got {self.channels!r}")
        if self.workers < 1 or self.max_attempts < 1:
            raise ValueError("workers and max_attempts must be at least 1")
        if self.sleep < 0 or self.backoff_s < 0 or (self.rate_limit is not None and self.rate_limit <= 0):
            raise ValueError("sleep and backoff must be >= 0 and rate_limit > 0")
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index must be in [0, {self.num_shards}), got {self.shard_index}")

    def url(self, ytid: str) -> str:
        return self.url_template.format(ytid=ytid)

    def satisfied_by(self, record: clip_cache.ClipRecord) -> bool:
        """Whether a cached clip is what these options would fetch (else it is fetched again)."""
        return (
            record.format == self.format
            and record.requested_sample_rate == self.sample_rate
            and (self.channels is None or record.channels == self.channels)
        )


@dataclass(frozen=True)
class ClipOutcome:
    """What happened to one clip in one run."""

    clip: Clip
    status: str
    reason: str = ""
    message: str = ""
    attempts: int = 0
    path: Path | None = None
    short_by_s: float = 0.0


@dataclass
class FetchReport:
    """Outcomes of a :func:`fetch_clips` run, one per distinct clip of the (shard of the) input."""

    outcomes: list[ClipOutcome] = field(default_factory=list)
    cache_dir: Path | None = None
    elapsed_s: float = 0.0
    ffmpeg: str = ""
    interrupted: bool = False
    #: Clips of other shards, not looked at by this run.
    other_shards: int = 0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> int:
        return self.count(OK)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    @property
    def permanent(self) -> int:
        return self.count(PERMANENT)

    @property
    def transient(self) -> int:
        return self.count(TRANSIENT)

    @property
    def pending(self) -> int:
        return self.count(PENDING)

    @property
    def complete(self) -> bool:
        """Every clip is cached or permanently unavailable: nothing a re-run could still get."""
        return self.transient == 0 and self.pending == 0

    @property
    def exit_code(self) -> int:
        """0 when complete, 1 when transient failures (or unattempted clips) remain."""
        return 0 if self.complete else 1

    def by_reason(self) -> Counter:
        return Counter((o.status, o.reason) for o in self.outcomes if o.status in (PERMANENT, TRANSIENT))

    def summary(self) -> str:
        parts = [f"{self.ok} fetched", f"{self.skipped} already cached", f"{self.permanent} unavailable",
                 f"{self.transient} failed (transient)"]
        if self.pending:
            parts.append(f"{self.pending} not attempted")
        lines = [", ".join(parts) + f" in {self.elapsed_s:.1f} s"]
        for (status, reason), n in sorted(self.by_reason().items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {status:<10} {reason:<20} {n}")
        short = [o for o in self.outcomes if o.status == OK and o.short_by_s > 0]
        if short:
            lines.append(f"  {len(short)} clips are shorter than asked because their source video ends early")
        return "\n".join(lines)


def find_ffmpeg(explicit: str | None = None) -> str:
    """The ffmpeg to use: ``explicit``, else ``ffmpeg`` on PATH, else the binary imageio-ffmpeg ships."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise FetchError(f"ffmpeg {explicit!r} is not an executable file")
        return explicit
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise FetchError(
            "ffmpeg not found: install it (e.g. `apt install ffmpeg`, `brew install ffmpeg`) or "
            "`pip install imageio-ffmpeg`, which ships a binary"
        ) from err


def shard_index_of(ytid: str, num_shards: int) -> int:
    """The shard of a video among ``num_shards``: a stable hash, the same on every machine."""
    return int(hashlib.sha1(ytid.encode("ascii")).hexdigest()[-8:], 16) % num_shards


def select_shard(clips: Iterable[Clip], num_shards: int, shard_index: int) -> Iterator[Clip]:
    for clip in clips:
        if num_shards == 1 or shard_index_of(clip.ytid, num_shards) == shard_index:
            yield clip


# --- one download ------------------------------------------------------------------------------


class _ClipFailure(Exception):
    def __init__(self, status: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class _Logger:
    """Collects yt-dlp's messages instead of printing them over the progress bar."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def _http_status(err: BaseException) -> int | None:
    """The HTTP status buried in a yt-dlp error chain, if a plain HTTP request failed."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        status = getattr(e, "status", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
        exc_info = getattr(e, "exc_info", None)
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__,
                 exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None]
    return None


_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")


class _Downloader:
    """Downloads single clips with yt-dlp into a folder.

    Each worker thread keeps one ``YoutubeDL`` (creating one costs ~50 ms of CPU, as much as the cut
    itself) and sets the per-clip parameters before each download; YoutubeDL reads them at use time.
    """

    def __init__(self, options: FetchOptions, ffmpeg: str, cache_dir: Path) -> None:
        self.options = options
        self.ffmpeg = ffmpeg
        self.cache_dir = cache_dir
        codec, muxer = _CODECS[options.format]
        # ffmpeg's output: audio only, the final codec, rate and channels in one pass from the decoded
        # source (no intermediate lossy encode), in the final container whatever container yt-dlp named
        # from the source's extension (a later -f wins over yt-dlp's).
        out_args = ["-vn", "-map_metadata", "-1"]
        if options.channels is not None:
            out_args += ["-ac", str(options.channels)]
        if options.sample_rate is not None:
            out_args += ["-ar", str(options.sample_rate)]
        self._out_args = [*out_args, "-c:a", codec, "-f", muxer]
        self._local = threading.local()
        self._opened: list = []
        self._opened_lock = threading.Lock()

    def _base_params(self, logger: _Logger) -> dict:
        o = self.options
        params = {
            "format": "bestaudio[protocol^=http]/bestaudio/best",
            "force_keyframes_at_cuts": True,
            "ffmpeg_location": self.ffmpeg,
            # Fixups would remux by the source's extension a file that already holds the final codec.
            "fixup": "never",
            "noplaylist": True,
            "overwrites": True,
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": logger,
            "socket_timeout": o.socket_timeout_s,
            "retries": 3,
            # yt-dlp's player cache stays inside the clip cache: nothing is written anywhere else.
            "cachedir": str(self.cache_dir / ".yt-dlp"),
        }
        if o.cookies:
            # yt-dlp writes its cookie jar back on close; workers must not race on the user's file.
            private = self.cache_dir / f".cookies-{os.getpid()}-{threading.get_ident()}.txt"
            shutil.copyfile(os.path.expanduser(o.cookies), private)
            params["cookiefile"] = str(private)
        if o.proxy:
            params["proxy"] = o.proxy
        return params

    def clip_params(self, clip: Clip, folder: Path) -> dict:
        """The parameters that change per clip: output name, time range, ffmpeg arguments."""
        from yt_dlp.utils import download_range_func

        assert clip.start_s is not None and clip.end_s is not None
        range_start = max(0.0, clip.start_s - PREROLL_S)
        trim = ["-ss", f"{clip.start_s - range_start:.6f}"] if clip.start_s > range_start else []
        return {
            "outtmpl": {"default": str(folder / "clip.%(ext)s")},
            "download_ranges": download_range_func(None, [(range_start, clip.end_s)]),
            "external_downloader_args": {"ffmpeg_i": list(FFMPEG_INPUT_ARGS), "ffmpeg_o": trim + self._out_args},
        }

    def _ydl(self):
        import yt_dlp
        from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

        if getattr(self._local, "ydl", None) is None:
            # yt-dlp decides whether ffmpeg can cut a time range from PATH alone, ignoring
            # `ffmpeg_location` (a FIXME in FFmpegFD.available); its own CLI sets this context variable
            # instead. Without it a pip-only install (imageio-ffmpeg, no ffmpeg on PATH) could not cut.
            location = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
            if location is not None:
                location.set(self.ffmpeg)
            self._local.logger = _Logger()
            self._local.ydl = yt_dlp.YoutubeDL(self._base_params(self._local.logger))
            with self._opened_lock:
                self._opened.append(self._local.ydl)
        return self._local.ydl, self._local.logger

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for ydl in opened:
            cookiefile = ydl.params.get("cookiefile")
            ydl.close()
            if cookiefile:
                Path(cookiefile).unlink(missing_ok=True)

    def download(self, clip: Clip, folder: Path) -> tuple[Path, dict]:
        """Download ``clip`` into ``folder``; returns the audio file and yt-dlp's info dict."""
        import yt_dlp

        ydl, logger = self._ydl()
        logger.errors.clear()
        ydl.params.update(self.clip_params(clip, folder))
        try:
            info = ydl.extract_info(self.options.url(clip.ytid), download=True) or {}
        except yt_dlp.utils.DownloadError as err:
            message = _clean_message(str(err) or "; ".join(logger.errors))
            status, reason = journal.classify(message, _http_status(err))
            raise _ClipFailure(status, reason, message) from err
        made = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
        made = [p for p in made if p.is_file() and p.parent == folder]
        if len(made) != 1:
            found = sorted(p.name for p in folder.iterdir())
            raise _ClipFailure(TRANSIENT, "no_output", f"yt-dlp reported success but wrote {found or 'nothing'}")
        return made[0], info

    def source_duration(self, info: dict) -> tuple[float | None, float]:
        """The source's duration and its uncertainty: from yt-dlp's info, else by probing the media URL."""
        duration = info.get("duration")
        if isinstance(duration, (int, float)) and duration > 0:
            # YouTube states whole seconds.
            return float(duration), 1.0 if float(duration).is_integer() else 0.05
        url = info.get("url") or next(iter(d.get("url") for d in info.get("requested_downloads") or []), None)
        if not url:
            return None, 0.0
        cmd = [self.ffmpeg, "-hide_banner", "-nostdin", *FFMPEG_INPUT_ARGS, "-i", url]
        env = None
        if self.options.proxy:
            env = {**os.environ, "http_proxy": self.options.proxy, "HTTP_PROXY": self.options.proxy}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None, 0.0
        match = _DURATION_RE.search(proc.stderr)
        if not match:
            return None, 0.0
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds), 0.05


def _clean_message(message: str) -> str:
    message = re.sub(r"\x1b\[[0-9;]*m", "", message).strip()
    return message[len("ERROR: "):] if message.startswith("ERROR: ") else message


# --- pacing ------------------------------------------------------------------------------------


class _Pacer:
    """Start downloads no faster than ``rate`` per second overall; everyone pauses after a 429."""

    def __init__(self, rate: float | None, stop: threading.Event) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._stop = stop

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        self._stop.wait(max(0.0, slot - time.monotonic()))

    def pause(self, seconds: float) -> None:
        """Hold every worker back for ``seconds`` (the source is rate limiting or checking for bots)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def _backoff(options: FetchOptions, attempt: int) -> float:
    return min(options.backoff_max_s, options.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


# --- the run -----------------------------------------------------------------------------------


class _Run:
    def __init__(self, cache_dir: Path, options: FetchOptions, ffmpeg: str) -> None:
        self.cache_dir = cache_dir
        self.options = options
        self.downloader = _Downloader(options, ffmpeg, cache_dir)
        self.journal = journal.host_journal(cache_dir)
        self.stop = threading.Event()
        self.pacer = _Pacer(options.rate_limit, self.stop)
        self.outcomes: queue.Queue[ClipOutcome] = queue.Queue()
        # Videos found permanently unavailable during this run: their other clips need no request.
        self.gone: dict[str, ClipOutcome] = {}
        self._gone_lock = threading.Lock()

    # Each task is one video's clips, fetched in order by one worker.
    def run_group(self, clips: list[Clip], blocking: bool) -> list[Clip]:
        deferred = []
        for clip in clips:
            if self.stop.is_set():
                deferred.append(clip)
                continue
            outcome = self.fetch_locked(clip, blocking)
            if outcome is None:
                deferred.append(clip)
            else:
                self.outcomes.put(outcome)
        return deferred

    def fetch_locked(self, clip: Clip, blocking: bool) -> ClipOutcome | None:
        """Fetch ``clip`` holding its lock; ``None`` if another process holds it and we must not wait."""
        folder = clip_cache.clip_dir(self.cache_dir, clip)
        folder.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(folder / f".{clip.key}.lock"))
        while True:
            try:
                lock.acquire(timeout=1.0 if blocking else 0)
                break
            except filelock.Timeout:
                if not blocking or self.stop.is_set():
                    return None
        try:
            return self.fetch(clip)
        finally:
            lock.release()

    def fetch(self, clip: Clip) -> ClipOutcome | None:
        o = self.options
        record = clip_cache.read_record(self.cache_dir, clip)
        if record is not None and o.satisfied_by(record):
            path = clip_cache.clip_dir(self.cache_dir, clip) / record.file
            if not o.reverify:
                # Another process fetched it while we waited for its lock: reuse the result.
                return ClipOutcome(clip, SKIPPED, "fetched_by_other_process", path=path)
            if self._still_valid(clip, record):
                return ClipOutcome(clip, SKIPPED, "cached", path=path, short_by_s=record.short_by_s)
            clip_cache.record_path(self.cache_dir, clip).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        with self._gone_lock:
            gone = self.gone.get(clip.ytid)
        if gone is not None:
            return self._finish(clip, PERMANENT, gone.reason, gone.message, 0)
        self._remove_stale_temporaries(clip)
        adopted = self._adopt_orphan(clip)
        if adopted is not None:
            return adopted
        attempts = 0
        failure: _ClipFailure | None = None
        while attempts < o.max_attempts and not self.stop.is_set():
            if attempts:
                delay = _backoff(o, attempts)
                if failure is not None and failure.reason in ("rate_limited", "bot_check"):
                    self.pacer.pause(delay)
                else:
                    self.stop.wait(delay)
            if o.sleep:
                self.stop.wait(o.sleep)
            self.pacer.wait()
            if self.stop.is_set():
                break
            attempts += 1
            try:
                return self._attempt(clip, attempts)
            except _ClipFailure as err:
                failure = err
                if err.status == PERMANENT:
                    break
        if failure is None or (self.stop.is_set() and failure.status != PERMANENT):
            # Stopped (Ctrl-C also kills ffmpeg): not the clip's fault, so nothing to journal.
            return ClipOutcome(clip, PENDING, "interrupted")
        if failure.status == PERMANENT and failure.reason in journal.VIDEO_LEVEL_REASONS:
            with self._gone_lock:
                self.gone[clip.ytid] = ClipOutcome(clip, PERMANENT, failure.reason, failure.message)
        return self._finish(clip, failure.status, failure.reason, failure.message, attempts)

    def _attempt(self, clip: Clip, attempt: int) -> ClipOutcome:
        folder = clip_cache.clip_dir(self.cache_dir, clip)
        tmp = folder / f".tmp-{clip.key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        info: dict = {}
        try:
            path, info = self.downloader.download(clip, tmp)
            verdict = self._verify(clip, path, lambda: self.downloader.source_duration(info))
            final = self._install(clip, path)
            self._record(clip, final, verdict)
            return self._finish(clip, OK, "short_source" if verdict.short_by_s else "", "", attempt, final,
                                verdict.short_by_s)
        except _ClipFailure as err:
            if info and err.status == TRANSIENT and err.reason in ("no_output", "verification", "download_failed"):
                # An empty or undecodable cut past the end of its video is no transient matter.
                duration, _ = self.downloader.source_duration(info)
                if duration is not None and clip.start_s is not None and duration <= clip.start_s:
                    raise _ClipFailure(PERMANENT, "beyond_source_end",
                                       f"clip starts at {clip.start_s:.3f} s, the source is {duration:.3f} s long"
                                       ) from err
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _verify(self, clip: Clip, path: Path, source_duration: Callable) -> Verdict:
        o = self.options
        try:
            return check_clip(decode_facts(path), clip, sample_rate=o.sample_rate, channels=o.channels,
                              tolerance_s=o.tolerance_s, source_duration=source_duration)
        except VerificationError as err:
            raise _ClipFailure(PERMANENT if err.permanent else TRANSIENT, err.reason, str(err)) from err

    def _install(self, clip: Clip, path: Path) -> Path:
        """Rename a verified file to its final name (atomic: readers see all of it or nothing).

        A record left from an earlier file of this clip goes first: a kill right after the rename then
        leaves an unrecorded file, which the next run checks and keeps, instead of a stale record.
        """
        final = clip_cache.audio_path(self.cache_dir, clip, self.options.format)
        clip_cache.record_path(self.cache_dir, clip).unlink(missing_ok=True)
        os.replace(path, final)
        return final

    def _record(self, clip: Clip, final: Path, verdict: Verdict) -> None:
        """Write the record that makes ``final`` count as cached, then drop the clip's other formats."""
        facts = verdict.facts
        clip_cache.write_record(self.cache_dir, clip, clip_cache.ClipRecord(
            file=final.name, size=final.stat().st_size, format=self.options.format,
            sample_rate=facts.sample_rate, channels=facts.channels, frames=facts.frames,
            requested_sample_rate=self.options.sample_rate, short_by_s=verdict.short_by_s,
            source_duration_s=verdict.source_duration_s, url=self.options.url(clip.ytid), fetched_at=time.time(),
        ))
        for fmt in clip_cache.FORMATS:
            other = clip_cache.audio_path(self.cache_dir, clip, fmt)
            if other != final:
                other.unlink(missing_ok=True)

    def _still_valid(self, clip: Clip, record: clip_cache.ClipRecord) -> bool:
        path = clip_cache.clip_dir(self.cache_dir, clip) / record.file
        try:
            facts = decode_facts(path)
        except VerificationError:
            return False
        return (facts.frames, facts.sample_rate, facts.channels) == (record.frames, record.sample_rate, record.channels)

    def _adopt_orphan(self, clip: Clip) -> ClipOutcome | None:
        """Keep a file a killed run renamed into place but did not record yet, if it verifies.

        Only when there is no record at all: a record that does not match its file (truncated since)
        or these options (other rate) means the file must be fetched again.
        """
        path = clip_cache.audio_path(self.cache_dir, clip, self.options.format)
        if not path.is_file() or clip_cache.record_path(self.cache_dir, clip).exists():
            return None
        try:
            verdict = self._verify(clip, path, lambda: (None, 0.0))
        except _ClipFailure:
            path.unlink(missing_ok=True)
            return None
        self._record(clip, path, verdict)
        return self._finish(clip, OK, "recovered", "", 0, path)

    def _remove_stale_temporaries(self, clip: Clip) -> None:
        # Only the lock holder touches this clip's temporaries, so any left are from a killed run.
        folder = clip_cache.clip_dir(self.cache_dir, clip)
        for stale in folder.glob(f".tmp-{glob_escape(clip.key)}-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)

    def _finish(self, clip: Clip, status: str, reason: str, message: str, attempts: int,
                path: Path | None = None, short_by_s: float = 0.0) -> ClipOutcome:
        rel = str(path.relative_to(self.cache_dir)) if path is not None else ""
        self.journal.append(journal.JournalEntry.for_clip(
            clip, status, reason=reason, message=message, attempts=attempts, file=rel, short_by_s=short_by_s))
        return ClipOutcome(clip, status, reason, message, attempts, path, short_by_s)


def glob_escape(text: str) -> str:
    # Keys hold only [A-Za-z0-9_-], none of which glob treats specially; escape anyway for safety.
    return re.sub(r"([*?\[])", r"[\1]", text)


def fetch_clips(
    clips: Iterable[Clip],
    *,
    cache_dir: str | Path | None = None,
    options: FetchOptions | None = None,
    progress: bool = True,
) -> FetchReport:
    """Make every clip (of this shard) available in the cache, or say why it is not.

    Clips already cached and verified are skipped with a read and a stat each. Returns one outcome per
    distinct clip; raises :class:`FetchInterrupted` (a ``KeyboardInterrupt``) on Ctrl-C after stopping
    the workers and journaling what finished.
    """
    started = time.monotonic()
    options = options or FetchOptions()
    # Absolute, so that nothing (yt-dlp's output template included) depends on the working directory.
    cache_dir = (Path(cache_dir) if cache_dir is not None else clip_cache.default_cache_dir()).absolute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    ffmpeg = find_ffmpeg(options.ffmpeg)
    if options.cookies and not os.path.isfile(os.path.expanduser(options.cookies)):
        raise FetchError(f"cookies file {options.cookies} does not exist")

    unique: dict[str, Clip] = {}
    for clip in clips:
        unique.setdefault(clip.key, clip)
    mine = list(select_shard(unique.values(), options.num_shards, options.shard_index))
    report = FetchReport(cache_dir=cache_dir, ffmpeg=ffmpeg, other_shards=len(unique) - len(mine))

    cache_str = str(cache_dir)
    state: journal.JournalState | None = None  # read only once a clip is not cached
    todo: dict[str, list[Clip]] = {}
    for clip in mine:
        if not clip.has_times:
            report.outcomes.append(ClipOutcome(
                clip, PERMANENT, "unknown_times",
                "the clip's time window is unknown: give the source metadata (AudioSet strong labels, MusicCaps CSV)"))
            continue
        if not options.reverify:
            found = clip_cache.lookup(cache_str, clip)
            if found is not None and options.satisfied_by(found[0]):
                report.outcomes.append(ClipOutcome(clip, SKIPPED, "cached", path=Path(found[1]),
                                                   short_by_s=found[0].short_by_s))
                continue
        if not options.retry_failed:
            if state is None:
                state = journal.load(cache_dir)
            clip_state = state.get(clip)
            known = clip_state.latest if clip_state is not None and clip_state.status == PERMANENT else None
            known = known or state.video_failure(clip.ytid)
            if known is not None:
                report.outcomes.append(ClipOutcome(clip, PERMANENT, known.reason, known.message,
                                                   attempts=clip_state.attempts if clip_state else 0))
                continue
        todo.setdefault(clip.ytid, []).append(clip)

    run = _Run(cache_dir, options, ffmpeg)
    bar = _Progress(len(mine), progress)
    bar.tick_many(report.outcomes)
    try:
        deferred = _drain(run, [(clips, False) for clips in todo.values()], report, bar)
        if deferred and not run.stop.is_set():
            # Clips locked by another process: wait for it, then reuse its result.
            _drain(run, [(d, True) for d in deferred], report, bar)
    except KeyboardInterrupt:
        run.stop.set()
        report.interrupted = True
    finally:
        run.downloader.close()
        if todo:
            done = {o.clip.key for o in report.outcomes}
            for clips in todo.values():
                for clip in clips:
                    if clip.key not in done:
                        report.outcomes.append(ClipOutcome(clip, PENDING, "interrupted"))
        bar.close()
        report.elapsed_s = time.monotonic() - started
    if report.interrupted:
        raise FetchInterrupted(report)
    return report


def _drain(run: _Run, groups: list[tuple[list[Clip], bool]], report: FetchReport, bar: _Progress
           ) -> list[list[Clip]]:
    """Run ``groups`` on the worker pool, collecting outcomes as they come; returns deferred groups."""
    if not groups:
        return []
    deferred: list[list[Clip]] = []
    pool = ThreadPoolExecutor(max_workers=run.options.workers, thread_name_prefix="fetch")
    try:
        futures = [pool.submit(run.run_group, clips, blocking) for clips, blocking in groups]
        pending = set(futures)
        while pending or not run.outcomes.empty():
            try:
                outcome = run.outcomes.get(timeout=0.1)
            except queue.Empty:
                pending = {f for f in pending if not f.done()}
                continue
            report.outcomes.append(outcome)
            bar.tick(outcome)
        for f in futures:
            rest = f.result()
            if rest:
                deferred.append(rest)
    except BaseException:
        run.stop.set()
        for f in futures:
            f.cancel()
        pool.shutdown(wait=True)
        while not run.outcomes.empty():
            report.outcomes.append(run.outcomes.get())
        raise
    pool.shutdown(wait=True)
    return deferred


class _Progress:
    """A tqdm bar (on stderr) with ok / skipped / unavailable / failed counts."""

    _LABELS = {OK: "ok", SKIPPED: "skipped", PERMANENT: "unavailable", TRANSIENT: "failed"}

    def __init__(self, total: int, enabled: bool) -> None:
        self.counts: Counter = Counter()
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="clip", dynamic_ncols=True, smoothing=0.05)

    def tick_many(self, outcomes: list[ClipOutcome]) -> None:
        counts = Counter(o.status for o in outcomes)
        for status, label in self._LABELS.items():
            self.counts[label] += counts[status]
        if self.bar is not None:
            self.bar.set_postfix({k: self.counts[k] for k in self._LABELS.values()}, refresh=False)
            self.bar.update(len(outcomes))

    def tick(self, outcome: ClipOutcome) -> None:
        label = self._LABELS.get(outcome.status)
        if label:
            self.counts[label] += 1
        if self.bar is not None:
            self.bar.set_postfix({k: self.counts[k] for k in self._LABELS.values()}, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = [
    "ClipOutcome", "FetchError", "FetchInterrupted", "FetchOptions", "FetchReport", "YOUTUBE_URL_TEMPLATE",
    "fetch_clips", "find_ffmpeg", "select_shard", "shard_index_of",
]
