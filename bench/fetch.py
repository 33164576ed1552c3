"""Benchmark the clip fetcher against the per-clip yt-dlp CLI loop that existing downloaders run.

Everything is served on 127.0.0.1 by ``tests/media_server.py`` (real HTTP with byte ranges): YouTube is
not reachable here, and a local server makes the numbers about the downloader, not the network. Sources
are 60 s AAC files laid out like YouTube's audio; clips are 10 s at varied offsets. Ratios are measured
in one run, against a baseline measured in the same run:

(a) one ``yt-dlp`` CLI process per clip, sequentially (``--download-sections --force-keyframes-at-cuts
    -x --audio-format flac``), vs (b) :func:`audio_dialogues.fetch.fetch_clips` with default workers;
    target: b at least 3x faster (clips per second; (a) runs on a subset, it is sequential and steady);
(c) a re-run with every clip cached: clips checked per second over a synthesized 50,000-clip cache,
    target at least 20,000/s;
(d) ``audio-dialogues fetch`` SIGKILLed at about half way, then re-run: bytes the re-run fetched over the
    bytes the missing clips cost in a clean run of the same command; target at most 1.1.

The server runs in its own process (as a real host would), so it takes no GIL from the fetcher; (a) and
(b) alternate in rounds, so that other load on the machine weighs on both alike.

Usage: ``python bench/fetch.py [--clips 240] [--baseline-clips 40] [--cached-clips 50000]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_dialogues.fetch import FetchOptions, fetch_clips, journal  # noqa: E402
from audio_dialogues.fetch import cache as clip_cache  # noqa: E402
from audio_dialogues.sources.clips import Clip  # noqa: E402
from tests.media_server import write_media  # noqa: E402

SOURCE_S = 60.0
CLIP_S = 10.0


def make_clips(n: int, prefix: str) -> list[Clip]:
    """``n`` clips of distinct videos (so the server's per-file counters are per clip), varied offsets."""
    clips = []
    for i in range(n):
        ytid = f"{prefix}{i:05d}-_"[:11].ljust(11, "_")
        start = float((i * 7) % int(SOURCE_S - CLIP_S))
        clips.append(Clip(ytid, start, start + CLIP_S))
    return clips


def baseline_cli(server: Server, clips: list[Clip], out: Path) -> float:
    """(a): one yt-dlp process per clip, the way existing AudioSet/MusicCaps downloaders do it."""
    started = time.perf_counter()
    for clip in clips:
        url = server.url(f"{clip.ytid}.m4a")
        cmd = [sys.executable, "-m", "yt_dlp", "--quiet", "--no-warnings", "--no-progress", "--no-cache-dir",
               "-f", "bestaudio/best", "--download-sections", f"*{clip.start_s}-{clip.end_s}",
               "--force-keyframes-at-cuts", "-x", "--audio-format", "flac",
               "--postprocessor-args", "ExtractAudio:-ar 16000 -ac 1",
               "-o", str(out / f"{clip.key}.%(ext)s"), "--", url]
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    made = [c for c in clips if (out / f"{c.key}.flac").is_file()]
    assert len(made) == len(clips), f"baseline made {len(made)} of {len(clips)} clips"
    return elapsed


def synthesize_cache(cache: Path, n: int, template: Path) -> list[Clip]:
    """A cache of ``n`` verified clips (hard links to one real FLAC, real records, a real journal)."""
    clips = make_clips(n, "c")
    size = template.stat().st_size
    entries = []
    for clip in clips:
        final = clip_cache.audio_path(cache, clip, "flac")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.link(template, final)
        clip_cache.write_record(cache, clip, clip_cache.ClipRecord(
            file=final.name, size=size, format="flac", sample_rate=16000, channels=1,
            frames=int(CLIP_S * 16000), requested_sample_rate=16000))
        entries.append(journal.JournalEntry.for_clip(clip, "ok", attempts=1, file=str(final.relative_to(cache))))
    journal.host_journal(cache).append_many(entries)
    return clips


def records(cache: Path) -> int:
    return len(list(cache.glob("*/*.json")))


class Server:
    """tests/media_server.py in its own process: it must not share a GIL with the fetcher under test."""

    def __init__(self, manifest: dict[str, str], work: Path) -> None:
        path = work / "manifest.json"
        path.write_text(json.dumps(manifest))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.media_server", str(path)], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/media/{name}"

    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/media/{{ytid}}.m4a"

    def stats(self, reset: bool = False) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/{'_reset' if reset else '_stats'}") as r:
            return json.loads(r.read())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=240)
    parser.add_argument("--baseline-clips", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4, help="(a) and (b) alternate in this many rounds")
    parser.add_argument("--cached-clips", type=int, default=50_000)
    args = parser.parse_args()
    assert args.clips >= 200
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    server = None
    try:
        source = write_media(work / "src.m4a", SOURCE_S, 44100)
        clips = make_clips(args.clips, "b")
        baseline = make_clips(args.baseline_clips, "a")
        server = Server({f"{c.ytid}.m4a": str(source) for c in clips + baseline}, work)
        options = FetchOptions(url_template=server.url_template())
        print(f"{len(clips)} clips of {CLIP_S:.0f} s from {SOURCE_S:.0f} s AAC sources on 127.0.0.1:{server.port}; "
              f"{os.cpu_count()} CPUs; fetcher workers: {options.workers}")

        # (a) and (b), alternating in rounds so that both see the same machine load.
        (work / "cli").mkdir()
        t_a = t_b = 0.0
        for r in range(args.rounds):
            part_a = baseline[r::args.rounds]
            part_b = clips[r::args.rounds]
            t_a += baseline_cli(server, part_a, work / "cli")
            started = time.perf_counter()
            report = fetch_clips(part_b, cache_dir=work / "cache-b", options=options, progress=False)
            t_b += time.perf_counter() - started
            assert report.ok == len(part_b), report.summary()
        assert len(list((work / "cli").glob("*.flac"))) == len(baseline)
        rate_a, rate_b = len(baseline) / t_a, len(clips) / t_b
        print(f"(a) yt-dlp CLI per clip: {rate_a:6.2f} clips/s ({len(baseline)} clips in {t_a:.1f} s)")
        print(f"(b) fetch_clips:         {rate_b:6.2f} clips/s ({len(clips)} clips in {t_b:.1f} s)")
        print(f"    speed-up b/a: {rate_b / rate_a:.2f}x  (target >= 3x)")

        # (d) kill at half way, re-run, compare bytes with what the missing clips cost in a clean run.
        data = work / "data"
        data.mkdir()
        with open(data / "audioset_test.jsonl", "w") as f:
            for i, clip in enumerate(clips):
                f.write(json.dumps({"id": f"r{i}", "clips": [clip.to_dict()],
                                    "turns": [{"user": "?", "assistant": "!"}]}) + "\n")
        cache_clean, cache_d = work / "cache-clean", work / "cache-d"
        cmd = [sys.executable, "-m", "audio_dialogues.cli", "fetch", "audioset", "--data-dir", str(data),
               "--url-template", server.url_template(), "--no-progress", "--audio-cache-dir"]
        server.stats(reset=True)
        subprocess.run([*cmd, str(cache_clean)], check=True, capture_output=True)
        clip_bytes = server.stats()["bytes_sent"]
        server.stats(reset=True)
        proc = subprocess.Popen([*cmd, str(cache_d)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        while records(cache_d) < len(clips) // 2 and proc.poll() is None:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        missing = [c for c in clips if clip_cache.cached_clip(cache_d, c) is None]
        missing_bytes = sum(clip_bytes[f"{c.ytid}.m4a"] for c in missing)
        server.stats(reset=True)
        done = subprocess.run([*cmd, str(cache_d)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert all(clip_cache.cached_clip(cache_d, c) is not None for c in clips)
        stats = server.stats()
        rerun_bytes = sum(stats["bytes_sent"].values())
        print(f"(d) killed with {len(missing)} of {len(clips)} clips missing "
              f"({missing_bytes / 1e6:.1f} MB in a clean run); the re-run fetched {len(stats['requests'])} clips, "
              f"{rerun_bytes / 1e6:.1f} MB")
        print(f"    re-run bytes / missing bytes: {rerun_bytes / missing_bytes:.3f}  (target <= 1.1)")

        # (c) fully cached re-run over a large synthesized cache.
        template = next((work / "cache-b").glob("*/*.flac"))
        cache_c = work / "cache-c"
        cached = synthesize_cache(cache_c, args.cached_clips, template)
        started = time.perf_counter()
        report = fetch_clips(cached, cache_dir=cache_c, options=FetchOptions(), progress=False)
        t_c = time.perf_counter() - started
        assert report.skipped == len(cached), report.summary()
        started = time.perf_counter()
        found = sum(1 for c in cached if clip_cache.cached_clip(cache_c, c) is not None)
        t_lookup = time.perf_counter() - started
        assert found == len(cached)
        print(f"(c) cached re-run: {len(cached) / t_c:,.0f} clips/s checked by fetch_clips ({len(cached):,} clips "
              f"in {t_c:.2f} s); cached_clip alone: {len(cached) / t_lookup:,.0f}/s  (target >= 20,000/s)")
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
