"""The fetch run: the worker pool, per-clip locks, verification, installation and journaling.

See :mod:`audio_dialogues.fetch` for the guarantees.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..audio import cache as clip_cache
from ..audio.ffmpeg import find_ffmpeg
from ..files import TMP_PREFIX
from ..sources.annotations import gc_paused
from ..sources.clips import Clip
from . import journal, locking, network
from .audio_checks import Verdict, VerificationError, check_clip, decode_facts
from .downloader import ClipFailure, Downloader
from .options import CacheError, FetchError, FetchOptions, FetchStopped, NetworkUnreachable
from .pacing import Pacer, backoff_delay
from .preflight import check_tools, is_youtube, read_cookies
from .report import OK, PENDING, PERMANENT, SKIPPED, TRANSIENT, ClipOutcome, FetchInterrupted, FetchReport
from .sharding import select_shard


class _Run:
    def __init__(self, cache_dir: Path, options: FetchOptions, ffmpeg: str) -> None:
        self.cache_dir = cache_dir
        self.options = options
        self.downloader = Downloader(options, ffmpeg, cache_dir)
        self.journal = journal.host_journal(cache_dir, options.shard_index, options.num_shards)
        self.stop = threading.Event()
        self.pacer = Pacer(options.rate_limit, self.stop)
        self.outcomes: queue.Queue[ClipOutcome] = queue.Queue()
        # Videos found permanently unavailable during this run: their other clips need no request.
        self.gone: dict[str, ClipOutcome] = {}
        self._gone_lock = threading.Lock()
        self.work_dir = clip_cache.work_dir(cache_dir)
        #: Why the whole run stopped (cache unusable, network unreachable); set once, by the first worker.
        self.fatal: FetchStopped | None = None
        self._network_lock = threading.Lock()

    def stop_run(self, error: FetchStopped) -> None:
        if self.fatal is None:
            self.fatal = error
        self.stop.set()

    def cache_fault(self, err: OSError) -> bool:
        """Stop the run if ``err`` means the cache cannot be written; ``False`` for any other error."""
        what = clip_cache.cache_fault(self.cache_dir, err)
        if what is None:
            return False
        self.stop_run(CacheError(what))
        return True

    def disk_fault(self) -> bool:
        """After a download that may have failed writing: can the cache still take :data:`PROBE_BYTES`?
        If not, the run is stopped with a :class:`CacheError`."""
        try:
            clip_cache.probe_disk(self.work_dir)
        except OSError as err:
            return self.cache_fault(err)
        return False

    def network_down(self) -> bool:
        """After a transient failure: stop the run if the host cannot be reached at all."""
        with self._network_lock:  # one probe at a time; the others see its verdict
            if self.fatal is None and not self.stop.is_set():
                why = network.unreachable(self.options)
                if why is not None:
                    self.stop_run(NetworkUnreachable(why))
        return isinstance(self.fatal, NetworkUnreachable)

    # Each task is one video's clips, fetched in order by one worker.
    def run_group(self, clips: list[Clip], blocking: bool) -> list[Clip]:
        deferred = []
        for clip in clips:
            if self.stop.is_set():
                deferred.append(clip)
                continue
            try:
                outcome = self.fetch_locked(clip, blocking)
            except OSError as err:
                if not self.cache_fault(err):
                    raise
                outcome = ClipOutcome(clip, PENDING, "interrupted")
            if outcome is None:
                deferred.append(clip)
            else:
                self.outcomes.put(outcome)
        return deferred

    def fetch_locked(self, clip: Clip, blocking: bool) -> ClipOutcome | None:
        """Fetch ``clip`` holding its lock; ``None`` if another process holds it and we must not wait."""
        lock = locking.ClipLock(locking.lock_path(self.work_dir, clip.key))
        if not lock.acquire(blocking=blocking, stop=self.stop):
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
                return ClipOutcome(clip, SKIPPED, "fetched_by_other_process", location=path)
            if self._still_valid(clip, record):
                return ClipOutcome(clip, SKIPPED, "cached", location=path, short_by_s=record.short_by_s)
            clip_cache.record_path(self.cache_dir, clip).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        with self._gone_lock:
            gone = self.gone.get(clip.ytid)
        if gone is not None:
            return self._finish(clip, PERMANENT, gone.reason, gone.message, 0)
        locking.remove_temporaries(self.work_dir, clip.key)
        folder = clip_cache.clip_dir(self.cache_dir, clip)
        folder.mkdir(exist_ok=True)
        for stale in folder.glob(f"{TMP_PREFIX}{clip.key}-*"):  # a record write a kill interrupted
            stale.unlink(missing_ok=True)
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
                failure = _truncated_if_repeated(err, failure)
                if failure.status == PERMANENT or isinstance(self.fatal, CacheError):
                    break
                if self.network_down():  # one connection attempt: is it the clip, or is the host gone?
                    break
        if failure is None or (self.stop.is_set() and failure.status != PERMANENT):
            # Stopped (Ctrl-C also kills ffmpeg): not the clip's fault, so nothing to journal.
            return ClipOutcome(clip, PENDING, "interrupted")
        if isinstance(self.fatal, CacheError) and failure.reason in _MAYBE_DISK | {"truncated_source"}:
            # A cut the full disk cut short looks like a truncated source: the clip is not to blame.
            return ClipOutcome(clip, PENDING, "interrupted")
        if failure.status == PERMANENT and failure.reason in journal.VIDEO_LEVEL_REASONS:
            with self._gone_lock:
                self.gone[clip.ytid] = ClipOutcome(clip, PERMANENT, failure.reason, failure.message)
        return self._finish(clip, failure.status, failure.reason, failure.message, attempts)

    def _attempt(self, clip: Clip, attempt: int) -> ClipOutcome:
        tmp = clip_cache.temporary_path(self.cache_dir, clip, "download")
        tmp.mkdir(parents=True)
        try:
            try:
                path, info = self.downloader.download(clip, tmp)
            except ClipFailure as err:
                raise self._past_end(clip, err) from err
            try:
                verdict = self._verify(clip, path, lambda: self.downloader.source_duration(info))
            except ClipFailure as err:
                err.info = info
                raise self._past_end(clip, err) from err
            final = self._install(clip, path)
            self._record(clip, final, verdict)
            return self._finish(clip, OK, "short_source" if verdict.short_by_s else "", "", attempt, final,
                                verdict.short_by_s)
        except ClipFailure as err:
            if err.reason in _MAYBE_DISK:
                # Probed while the failed output still fills the disk: once it is removed, the disk has
                # room again, and the write failure would pass for a truncated source, retried and failing
                # the same way clip after clip.
                self.disk_fault()
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _past_end(self, clip: Clip, err: ClipFailure) -> ClipFailure:
        """``err``, or a permanent failure if the source ends before the clip starts.

        A cut past the end of its video fails in many ways (no output, an empty or undecodable file, an
        ffmpeg error), all of them the same on every retry; the source's length tells them apart.
        """
        if err.status != TRANSIENT or err.reason not in _MAYBE_PAST_END or not err.info:
            return err
        duration, uncertainty = self.downloader.source_duration(err.info)
        if duration is None:
            return err
        assert clip.start_s is not None
        if duration <= clip.start_s + self.options.tolerance_s:
            return ClipFailure(PERMANENT, "beyond_source_end",
                               f"clip starts at {clip.start_s:.3f} s, the source is {duration:.3f} s long")
        if err.reason in ("verification", "no_output", "short_clip"):
            # The source says it runs past the window, yet the cut came out empty or short: a source whose
            # data ends early (a truncated file) does that on every try; a dropped transfer does not.
            err.suspect_truncated = f"it says it is {duration:.3f} s long"
        return err

    def _verify(self, clip: Clip, path: Path, source_duration: Callable) -> Verdict:
        o = self.options
        facts = None
        try:
            facts = decode_facts(path)
            return check_clip(facts, clip, sample_rate=o.sample_rate, channels=o.channels,
                              tolerance_s=o.tolerance_s, source_duration=source_duration)
        except VerificationError as err:
            raise ClipFailure(PERMANENT if err.permanent else TRANSIENT, err.reason, str(err),
                              frames=facts.frames if facts else None) from err

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
        for fmt in clip_cache.CACHE_AUDIO_FORMATS:
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

    def _finish(self, clip: Clip, status: str, reason: str, message: str, attempts: int,
                path: Path | None = None, short_by_s: float = 0.0) -> ClipOutcome:
        rel = str(path.relative_to(self.cache_dir)) if path is not None else ""
        self.journal.append(journal.JournalEntry.for_clip(
            clip, status, reason=reason, message=message, attempts=attempts, file=rel, short_by_s=short_by_s))
        return ClipOutcome(clip, status, reason, message, attempts, path, short_by_s)


#: Failures that a cache that can no longer be written also produces (ffmpeg cannot write its output).
_MAYBE_DISK = frozenset({"download_failed", "no_output", "verification", "short_clip", "unknown"})
#: Failures that a cut past the end of its source produces.
_MAYBE_PAST_END = frozenset({"download_failed", "no_output", "verification", "short_clip"})


def _truncated_if_repeated(err: ClipFailure, previous: ClipFailure | None) -> ClipFailure:
    """A second identical empty or short cut of a source that claims to be longer: the source is truncated."""
    if (err.suspect_truncated and previous is not None and previous.suspect_truncated
            and (err.reason, err.frames) == (previous.reason, previous.frames)):
        detail = f"{err.frames} frames" if err.frames else "no audio"
        return ClipFailure(PERMANENT, "truncated_source",
                           f"the source's data ends early: {err.suspect_truncated}, yet cutting the window gave "
                           f"{detail} twice in a row (a truncated file)", info=err.info, frames=err.frames)
    return err


def fetch_clips(
    clips: Iterable[Clip],
    *,
    cache_dir: str | Path | None = None,
    options: FetchOptions | None = None,
    progress: bool = True,
    audio_dirs: Sequence[str | os.PathLike] = (),
) -> FetchReport:
    """Make every clip (of this shard) available in the cache, or say why it is not.

    Clips the user already has in ``audio_dirs`` (found exactly as the dataset builder finds them) and
    clips already cached and verified are skipped, with a stat each for the cache (and a read of the
    record where :class:`~audio_dialogues.audio.cache.RecordIndex` does not hold). Returns one outcome per
    distinct clip. Raises :class:`FetchInterrupted` (a ``KeyboardInterrupt``) on Ctrl-C
    after stopping the workers and journaling what finished; :class:`CacheError` when the cache cannot
    be written and :class:`NetworkUnreachable` when the video host cannot be reached at all, in both
    cases with nothing recorded against any clip and the report of what was done on the exception.
    """
    started = time.monotonic()
    options = options or FetchOptions()
    cache_dir = clip_cache.resolve_cache_dir(cache_dir)
    ffmpeg = find_ffmpeg(options.ffmpeg)
    if options.cookies:
        # An unusable file (missing, not Netscape, expired) would fail every clip with a sign-in prompt.
        read_cookies(options.cookies, is_youtube(options))
    local = _LocalAudio(audio_dirs, cache_dir) if audio_dirs else None

    # Tens of thousands of outcomes, none in a cycle: a collection pass would rescan them all, repeatedly.
    with gc_paused():
        unique: dict[str, Clip] = {}
        for clip in clips:
            if not isinstance(clip, Clip):
                raise FetchError(f"clips must be Clip objects (audio_dialogues.sources.clips.Clip), got {clip!r:.60}")
            unique.setdefault(clip.key, clip)
        mine = list(select_shard(unique.values(), options.num_shards, options.shard_index))
        report = FetchReport(cache_dir=cache_dir, ffmpeg=ffmpeg, other_shards=len(unique) - len(mine))

        index = clip_cache.RecordIndex(cache_dir)
        lookup, satisfied_by, outcomes = index.lookup, options.satisfied_by, report.outcomes
        state: journal.JournalState | None = None  # read only once a clip is not cached
        todo: dict[str, list[Clip]] = {}
        for clip in mine:
            if local is not None:
                path = local.find(clip)
                if path is not None:
                    outcomes.append(ClipOutcome(clip, SKIPPED, "local", location=path))
                    continue
            if clip.start_s is None:
                outcomes.append(ClipOutcome(
                    clip, PERMANENT, "unknown_times",
                    "the clip's time window is unknown: give the source metadata (AudioSet strong labels, "
                    "MusicCaps CSV)"))
                continue
            if not options.reverify:
                found = lookup(clip)
                if found is not None and satisfied_by(found[0]):
                    outcomes.append(ClipOutcome(clip, SKIPPED, "cached", location=found[1],
                                                short_by_s=found[0].short_by_s))
                    continue
            if not options.retry_failed:
                if state is None:
                    state = journal.load(cache_dir)
                    report.journal_stats = state.stats
                clip_state = state.get(clip)
                known = clip_state.latest if clip_state is not None and clip_state.status == PERMANENT else None
                known = known or state.video_failure(clip.ytid)
                if known is not None:
                    outcomes.append(ClipOutcome(clip, PERMANENT, known.reason, known.message,
                                                attempts=clip_state.attempts if clip_state else 0))
                    continue
            todo.setdefault(clip.ytid, []).append(clip)

    if todo:
        check_tools(options)  # ffmpeg runs; for YouTube, the JS runtime and solver scripts are there
    locking.sweep(clip_cache.work_dir(cache_dir))
    run = _Run(cache_dir, options, ffmpeg)
    bar = Progress(len(mine), progress)
    bar.tick_many(report.outcomes)
    try:
        if todo:
            _preflight(run)
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
    if run.fatal is not None:
        run.fatal.report = report
        raise run.fatal
    if todo or index.learnt:  # the next run reads an index file per folder instead of every record
        try:
            index.save(o.clip for o in report.outcomes if o.status == OK)
        except KeyboardInterrupt:  # after a long fetch, saving reads the records of the folders it changed
            report.interrupted = True
            raise FetchInterrupted(report) from None
    return report


class _LocalAudio:
    """The user's own audio, found exactly as the dataset builder finds it (a whole video's window is cut)."""

    def __init__(self, audio_dirs: Sequence[str | os.PathLike], cache_dir: Path) -> None:
        from ..audio.headers import UnusableAudioError
        from ..audio.resolver import AudioResolver

        self.resolver = AudioResolver(audio_dirs, cache_dir)
        self.unusable = UnusableAudioError

    def find(self, clip: Clip) -> Path | None:
        """The audio the builder would use for ``clip`` from the user's folders; ``None``: fetch it."""
        if self.resolver.index.find(clip) is None:
            return None
        try:
            return self.resolver.resolve(clip)
        except self.unusable:  # e.g. a file that does not reach the clip's window: download the clip
            return None


def _preflight(run: _Run) -> None:
    """Before the first download: can the cache be written, and can the video host be reached?"""
    try:
        clip_cache.check_writable(run.cache_dir)
    except OSError as err:
        if not run.cache_fault(err):
            run.stop_run(CacheError(f"the clip cache {run.cache_dir} cannot be written: {err}"))
        return
    why = network.unreachable(run.options)
    if why is not None:
        run.stop_run(NetworkUnreachable(why))


def _drain(run: _Run, groups: list[tuple[list[Clip], bool]], report: FetchReport, bar: Progress
           ) -> list[list[Clip]]:
    """Run ``groups`` on the worker pool, collecting outcomes as they come; returns deferred groups."""
    if not groups or run.stop.is_set():
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
