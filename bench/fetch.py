"""Benchmark the clip fetcher against competent baselines measured in the same run; PASS/FAIL per target.

Everything is served on 127.0.0.1 by ``tests/media_server.py`` (real HTTP with byte ranges), in its own
process as a real host would be: YouTube is not reachable here, and a local server makes the numbers
about the downloader, not the network. Sources are 60 s AAC files laid out like YouTube's audio; clips
are 10 s at varied offsets, written as 16 kHz mono FLAC. The three fetchers alternate in rounds, so
other load on the machine weighs on all alike.

(a) the physical floor: one direct ``ffmpeg`` cut of the same window from the same URL (input seeking,
    no yt-dlp, no checks), sequentially; CPU time per clip (ffmpeg's own);
(b) the same yt-dlp work done competently in one process through its Python API: one ``YoutubeDL`` per
    worker thread, ``download_ranges`` with ``force_keyframes_at_cuts``, extraction to 16 kHz mono FLAC by
    its post-processor, with the fetcher's worker count;
(c) :func:`audio_dialogues.fetch.fetch_clips` (which also verifies every clip by decoding it, records and
    journals it); target: CPU per clip at most 1.3x (a), and no more than (b);
(d) the cached re-run as a user runs it: the ``audio-dialogues fetch`` command over a config of 50,000
    clips, all cached (annotations read, every clip looked up, start-up included); target 20,000 clips/s.
    The cache is written directly, then left to stand for ``RACY_NS`` (3 s) as a cache written earlier has;
    the first of the three runs reads every record and the annotations (and writes the record index and
    the clip list), all three are printed and the best counts;
(e) ``audio-dialogues fetch`` SIGKILLed at about half way, then re-run: bytes the re-run fetched over
    the bytes the missing clips cost in a clean run of the same command; target at most 1.1.

Exit status 1 when a target is missed.

Usage: ``python bench/fetch.py [--clips 120] [--cached-clips 50000]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_dialogues.audio import cache as clip_cache  # noqa: E402
from audio_dialogues.audio.ffmpeg import find_ffmpeg  # noqa: E402
from audio_dialogues.fetch import FetchOptions, fetch_clips  # noqa: E402
from audio_dialogues.sources.clips import Clip  # noqa: E402
from bench._common import Verdicts, canonical_record, measure_contention, print_results, random_ytids  # noqa: E402
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


def cpu_s() -> float:
    """CPU time of this process and of its finished children (ffmpeg), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def direct_ffmpeg(server: Server, clips: list[Clip], out: Path, ffmpeg: str) -> None:
    """(a): ffmpeg alone cutting each window from its URL, the least any fetcher has to spend."""
    for clip in clips:
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-ss", f"{clip.start_s:.3f}",
               "-t", f"{clip.duration_s:.3f}", "-i", server.url(f"{clip.ytid}.m4a"), "-vn", "-ac", "1",
               "-ar", "16000", "-c:a", "flac", str(out / f"{clip.key}.flac")]
        subprocess.run(cmd, check=True)


def ytdlp_api(server: Server, clips: list[Clip], out: Path, ffmpeg: str, workers: int) -> None:
    """(b): yt-dlp's Python API used well: a YoutubeDL per worker thread, time ranges, one post-processor."""
    import yt_dlp
    from yt_dlp.utils import download_range_func

    local = threading.local()

    def one(clip: Clip) -> None:
        if getattr(local, "ydl", None) is None:
            local.ydl = yt_dlp.YoutubeDL({
                "format": "bestaudio/best", "quiet": True, "no_warnings": True, "noprogress": True,
                "cachedir": False, "force_keyframes_at_cuts": True, "ffmpeg_location": ffmpeg,
                "postprocessors": [{"key": "FFmpegExtractAudio", "preferredcodec": "flac"}],
                "postprocessor_args": {"extractaudio": ["-ar", "16000", "-ac", "1"]},
            })
        local.ydl.params["outtmpl"] = {"default": str(out / f"{clip.key}.%(ext)s")}
        local.ydl.params["download_ranges"] = download_range_func(None, [(clip.start_s, clip.end_s)])
        local.ydl.extract_info(server.url(f"{clip.ytid}.m4a"), download=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, clips))
    made = [c for c in clips if (out / f"{c.key}.flac").is_file()]
    assert len(made) == len(clips), f"yt-dlp API made {len(made)} of {len(clips)} clips"


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


def synthesize_config(work: Path, n: int, template: Path) -> tuple[Path, Path]:
    """An ``audioset`` annotation file of ``n`` realistic records and a cache holding every clip."""
    rng = random.Random(7)
    data, cache = work / "data-c", work / "cache-c"
    data.mkdir()
    clips = []
    with open(data / "audioset_test.jsonl", "w") as f:
        for i, ytid in enumerate(random_ytids(rng, n)):
            record = canonical_record(rng, f"r{i}", ytid)
            clips.append(Clip(**record["clips"][0]))
            f.write(json.dumps(record) + "\n")
    size = template.stat().st_size
    for clip in clips:
        final = clip_cache.audio_path(cache, clip, "flac")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.link(template, final)
        clip_cache.write_record(cache, clip, clip_cache.ClipRecord(
            file=final.name, size=size, format="flac", sample_rate=16000, channels=1,
            frames=int(CLIP_S * 16000), requested_sample_rate=16000))
    # Written by an earlier run, not in the last moment: the record index takes in only folders that have
    # stood unchanged for RACY_NS (a folder's ctime cannot be dated back).
    time.sleep(clip_cache.RACY_NS / 1e9)
    return data, cache


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=120, help="clips per fetcher in (a), (b), (c)")
    parser.add_argument("--rounds", type=int, default=3, help="(a), (b) and (c) alternate in this many rounds")
    parser.add_argument("--cached-clips", type=int, default=50_000)
    parser.add_argument("--kill-clips", type=int, default=60, help="clips of the kill-and-resume run (e)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    server = None
    verdicts = Verdicts()
    try:
        with measure_contention() as contention:
            source = write_media(work / "src.m4a", SOURCE_S, 44100)
            sets = {name: make_clips(args.clips, name) for name in ("a", "b", "c")}
            killed = make_clips(args.kill_clips, "k")
            server = Server({f"{c.ytid}.m4a": str(source) for clips in [*sets.values(), killed] for c in clips}, work)
            options = FetchOptions(url_template=server.url_template())
            ffmpeg = find_ffmpeg()
            print(f"{args.clips} clips of {CLIP_S:.0f} s per fetcher, from {SOURCE_S:.0f} s AAC sources on "
                  f"127.0.0.1:{server.port}; {os.cpu_count()} CPUs; workers: {options.workers}; {ffmpeg}")
            cpu = dict.fromkeys(sets, 0.0)
            wall = dict.fromkeys(sets, 0.0)
            for name in sets:
                (work / name).mkdir()
            for r in range(args.rounds):
                for name, clips in sets.items():
                    part = clips[r::args.rounds]
                    c0, t0 = cpu_s(), time.perf_counter()
                    if name == "a":
                        direct_ffmpeg(server, part, work / "a", ffmpeg)
                    elif name == "b":
                        ytdlp_api(server, part, work / "b", ffmpeg, options.workers)
                    else:
                        report = fetch_clips(part, cache_dir=work / "c", options=options, progress=False)
                        assert report.ok == len(part), report.summary()
                    cpu[name] += cpu_s() - c0
                    wall[name] += time.perf_counter() - t0
            n = args.clips
            labels = {"a": "(a) direct ffmpeg cut, sequential", "b": "(b) yt-dlp Python API, thread pool",
                      "c": "(c) fetch_clips"}
            for name in sets:
                print(f"{labels[name]:<36} CPU {1000 * cpu[name] / n:6.1f} ms/clip   {n / wall[name]:6.2f} clips/s")
            floor_ratio = cpu["c"] / cpu["a"]
            api_ratio = cpu["c"] / cpu["b"]
            verdicts.check("fetch CPU/clip vs direct ffmpeg cut", f"{floor_ratio:.2f}x", "<= 1.30x",
                           floor_ratio <= 1.3)
            verdicts.check("fetch CPU/clip vs yt-dlp API", f"{api_ratio:.2f}x", "<= 1.00x", api_ratio <= 1.0)
            verdicts.check("fetch clips/s vs yt-dlp API", f"{wall['b'] / wall['c']:.2f}x", ">= 1.00x",
                           wall["c"] <= wall["b"])

            # (d) the cached re-run, as the user runs it.
            template = next((work / "c").glob("*/*.flac"))
            data_c, cache_c = synthesize_config(work, args.cached_clips, template)
            cmd = [sys.executable, "-m", "audio_dialogues.cli", "fetch", "audioset", "--data-dir", str(data_c),
                   "--audio-cache-dir", str(cache_c), "--no-progress"]
            # Bytecode written and read, as an installed package has it (pip compiles at install), also where the
            # environment sets PYTHONDONTWRITEBYTECODE (tox does): the first run writes it, best of 3 counts.
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
                runs.append(time.perf_counter() - started)
                assert done.returncode == 0 and f"{args.cached_clips} already cached" in done.stdout, done
            rate = args.cached_clips / min(runs)
            print(f"(d) `audio-dialogues fetch` over {args.cached_clips:,} cached clips: best of 3 {min(runs):.2f} s "
                  f"({', '.join(f'{t:.2f}' for t in runs)})")
            verdicts.check("cached re-run, CLI with annotations", f"{rate:,.0f} clips/s", ">= 20,000 clips/s",
                           rate >= 20_000)

            # (e) kill at half way, re-run, compare bytes with what the missing clips cost in a clean run.
            data = work / "data-e"
            data.mkdir()
            with open(data / "audioset_test.jsonl", "w") as f:
                for i, clip in enumerate(killed):
                    f.write(json.dumps({"id": f"r{i}", "clips": [clip.to_dict()],
                                        "turns": [{"user": "?", "assistant": "!"}]}) + "\n")
            cache_clean, cache_e = work / "cache-clean", work / "cache-e"
            cmd = [sys.executable, "-m", "audio_dialogues.cli", "fetch", "audioset", "--data-dir", str(data),
                   "--url-template", server.url_template(), "--no-progress", "--audio-cache-dir"]
            server.stats(reset=True)
            subprocess.run([*cmd, str(cache_clean)], check=True, capture_output=True, cwd=ROOT)
            clip_bytes = server.stats()["bytes_sent"]
            server.stats(reset=True)
            proc = subprocess.Popen([*cmd, str(cache_e)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True, cwd=ROOT)
            while records(cache_e) < len(killed) // 2 and proc.poll() is None:
                time.sleep(0.01)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            missing = [c for c in killed if clip_cache.cached_clip(cache_e, c) is None]
            missing_bytes = sum(clip_bytes[f"{c.ytid}.m4a"] for c in missing)
            server.stats(reset=True)
            done = subprocess.run([*cmd, str(cache_e)], capture_output=True, text=True, cwd=ROOT)
            assert done.returncode == 0, done.stdout + done.stderr
            assert all(clip_cache.cached_clip(cache_e, c) is not None for c in killed)
            rerun_bytes = sum(server.stats()["bytes_sent"].values())
            print(f"(e) killed with {len(missing)} of {len(killed)} clips missing ({missing_bytes / 1e6:.1f} MB in "
                  f"a clean run); the re-run fetched {rerun_bytes / 1e6:.1f} MB")
            ratio = rerun_bytes / missing_bytes
            verdicts.check("re-run bytes after a kill / missing bytes", f"{ratio:.3f}", "<= 1.1", ratio <= 1.1)
        return print_results((), contention, verdicts)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
