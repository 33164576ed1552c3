"""The fetch run: the worker pool, per-clip locks, verification, installation and journaling.

See :mod:`audio_dialogues.fetch` for the guarantees.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import filelock

from ..sources.clips import Clip
from . import cache as clip_cache
from . import journal
from .audio_checks import Verdict, VerificationError, check_clip, decode_facts
from .downloader import ClipFailure, Downloader
from .ffmpeg import find_ffmpeg
from .options import FetchError, FetchOptions
from .pacing import Pacer, backoff_delay
from .report import OK, PENDING, PERMANENT, SKIPPED, TRANSIENT, ClipOutcome, FetchInterrupted, FetchReport
from .sharding import select_shard


class _Run:
    def __init__(self, cache_dir: Path, options: FetchOptions, ffmpeg: str) -> None:
        self.cache_dir = cache_dir
        self.options = options
        self.downloader = Downloader(options, ffmpeg, cache_dir)
        self.journal = journal.host_journal(cache_dir)
        self.stop = threading.Event()
        self.pacer = Pacer(options.rate_limit, self.stop)
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
        failure: ClipFailure | None = None
        while attempts < o.max_attempts and not self.stop.is_set():
            if attempts:
                delay = backoff_delay(o, attempts)
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
            except ClipFailure as err:
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
        except ClipFailure as err:
            if info and err.status == TRANSIENT and err.reason in ("no_output", "verification", "download_failed"):
                # An empty or undecodable cut past the end of its video is no transient matter.
                duration, _ = self.downloader.source_duration(info)
                if duration is not None and clip.start_s is not None and duration <= clip.start_s:
                    raise ClipFailure(PERMANENT, "beyond_source_end",
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
            raise ClipFailure(PERMANENT if err.permanent else TRANSIENT, err.reason, str(err)) from err

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
        except ClipFailure:
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
    cache_dir = clip_cache.resolve_cache_dir(cache_dir)
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
    bar = Progress(len(mine), progress)
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


def _drain(run: _Run, groups: list[tuple[list[Clip], bool]], report: FetchReport, bar: Progress
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


class Progress:
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
