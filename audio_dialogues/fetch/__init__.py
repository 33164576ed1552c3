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

* a lock per clip (``flock``; across threads, processes and, on a shared disk, machines) means one
  writer per clip; a second process waits and reuses the result; the lock file exists only while held
  (:mod:`.locking`);
* everything is written inside a temporary folder in the cache's ``.work`` folder, decoded and checked
  (:mod:`.audio_checks`), and only then renamed into place (atomic on one file system), then recorded
  (:mod:`.cache`); a kill at any point leaves no partial file under a final name;
* the outcome (ok, permanently unavailable, transient failure, with the message and attempts) goes to
  the journal (:mod:`.journal`) as soon as it is known.

A run stops as a whole, recording nothing against any clip, when the cache cannot be written (a file
where the folder should be, read-only, full) or the video host cannot be reached at all (offline):
both are checked before the first download and again when downloads fail in a way they would cause.
Before that, :mod:`.preflight` checks the tools: ffmpeg runs, and for YouTube a JavaScript runtime
(:mod:`.jsruntime`, handed to yt-dlp by path) and the EJS solver scripts are there; the cookies file is
read as yt-dlp reads it. A missing one is a :class:`FetchError` naming the fix, before any request.

Runs are resumable: verified clips are skipped by a stat, permanent failures are not retried unless
asked, transient ones are retried with exponential backoff and jitter. Work is split across machines by
``num_shards``/``shard_index`` (by video, so every clip of a video and what is learnt about it stays on
one machine).
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it; imported on first use, so that ``fetch --help`` and
#: ``status`` start without yt-dlp, soundfile and numpy.
_PUBLIC = {
    "YOUTUBE_URL_TEMPLATE": ".options", "FetchError": ".options", "FetchOptions": ".options",
    "FetchStopped": ".options", "CacheError": ".options", "NetworkUnreachable": ".options",
    "ClipOutcome": ".report", "FetchInterrupted": ".report", "FetchReport": ".report",
    "fetch_clips": ".run",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
