"""``audio-dialogues fetch`` / ``status`` as processes: SIGKILL and Ctrl-C midway, two fetchers at once,
exit codes, a pip-only ffmpeg. Real yt-dlp and ffmpeg against ``tests/media_server.py`` on 127.0.0.1
(YouTube is not reachable from tests; the generic extractor speaks the same HTTP).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_dialogues.audio import cache as clip_cache
from audio_dialogues.fetch import journal
from audio_dialogues.sources.clips import Clip
from tests.media_server import CLIP_S, MediaServer, chirp, make_clips, source_server, write_annotations


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with source_server(tmp_path_factory.mktemp("media")) as srv:
        yield srv


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "audio_dialogues.cli", *args]


def fetch_args(server: MediaServer, data: Path, cache: Path, *extra: str) -> list[str]:
    return cli("fetch", "audioset", "--data-dir", str(data), "--audio-cache-dir", str(cache),
               "--url-template", server.url_template("m4a"), "--workers", "2", "--no-progress", *extra)


def visible_audio(cache: Path) -> list[Path]:
    return [p for p in cache.glob("*/*") if p.suffix in (".flac", ".wav") and not p.name.startswith(".")]


def assert_consistent(cache: Path, clips: list[Clip]) -> None:
    """No partial file under a final name; every journal 'ok' names a cached, complete clip."""
    by_name = {f"{c.key}.flac": c for c in clips}
    for path in visible_audio(cache):
        assert sf.info(path).frames == CLIP_S * 16000, f"partial file visible: {path}"
        assert len(sf.read(path)[0]) == CLIP_S * 16000
        assert path.name in by_name
    state = journal.load(cache)
    for key, clip_state in state.clips.items():
        if clip_state.status == "ok":
            clip = clip_state.latest.clip
            assert clip_cache.cached_clip(cache, clip) is not None, f"journal says ok, cache has no {key}"


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def records(cache: Path) -> int:
    return len(list(cache.glob("*/*.json")))


def test_sigkill_midway_several_times_then_resume(server, tmp_path):
    clips = make_clips(server, "kill", 12)
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    held = f"{clips[0].ytid}.m4a"
    kills = [
        lambda: server.stalled[held] > 0,  # in the middle of a download
        lambda: records(cache) >= 3,
        lambda: records(cache) >= 6,
    ]
    # While the first clip's media is held no run can finish, however fast the machine: each is killed midway.
    with server.hold(held):
        for kill_when in kills:
            proc = subprocess.Popen(fetch_args(server, data, cache), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_for(lambda kill_when=kill_when, proc=proc: kill_when() or proc.poll() is not None)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)  # the Python process only: its ffmpeg may run on, orphaned
                proc.wait()
                time.sleep(0.2)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            assert proc.returncode == -signal.SIGKILL
            assert_consistent(cache, clips)
    assert records(cache) < len(clips), "the runs were not killed midway"
    done = subprocess.run(fetch_args(server, data, cache), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_consistent(cache, clips)
    assert all(clip_cache.cached_clip(cache, c) is not None for c in clips)
    assert len(visible_audio(cache)) == len(clips)
    # Nothing a kill left stays behind: no temporaries, no lock files (the run sweeps the work folder).
    leftovers = [p for p in cache.rglob("*") if p.name.endswith((".lock", ".tmp")) or p.name.startswith(".tmp-")]
    assert not leftovers and not list(clip_cache.work_dir(cache).iterdir()), leftovers
    state = journal.load(cache)
    assert state.stats.bad_lines <= len(kills)
    # Every journaled clip is ok; a kill between recording a clip and journaling it leaves it unjournaled,
    # which is fine: the cache is the truth (status counts it as ok, as checked below).
    assert {s.status for s in state.clips.values()} == {"ok"} and set(state.clips) <= {c.key for c in clips}
    assert len(state.clips) >= len(clips) - len(kills)

    # status over the config: everything ok, nothing missing.
    out = subprocess.run(cli("status", "audioset", "--data-dir", str(data), "--audio-cache-dir", str(cache),
                             "--missing-csv", str(tmp_path / "missing.csv")), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "12 clips" in out.stdout and "ok         12" in out.stdout
    assert list(csv.reader(open(tmp_path / "missing.csv"))) == [list(journal.MISSING_COLUMNS)]


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(server, tmp_path):
    clips = make_clips(server, "ctrlc", 10)
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    # While the first clip's media is held the run cannot finish before the Ctrl-C, however fast the machine;
    # released at once after it (the interrupted worker probes the source's duration before it stops).
    with server.hold(f"{clips[0].ytid}.m4a"):
        proc = subprocess.Popen(fetch_args(server, data, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        wait_for(lambda: records(cache) >= 2 or proc.poll() is not None)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: ffmpeg gets it too
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "fetched" in out and "resume" in err
    assert_consistent(cache, clips)
    # Interrupted clips are not journaled as failures.
    assert all(s.status == "ok" for s in journal.load(cache).clips.values())
    done = subprocess.run(fetch_args(server, data, cache), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(clip_cache.cached_clip(cache, c) is not None for c in clips)


def test_two_processes_fetch_each_clip_once(server, tmp_path):
    clips = make_clips(server, "twice", 10)
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen(fetch_args(server, data, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    fetched = [int(out.split(" fetched")[0].split()[-1]) for out, _ in outs]
    assert sum(fetched) == len(clips), outs
    for clip in clips:
        # yt-dlp probes the URL once per download (a GET without Range): exactly one download per clip.
        probes = [entry for entry in server.log if entry[0] == f"{clip.ytid}.m4a" and entry[1] is None]
        assert len(probes) == 1, (clip, probes)
    assert_consistent(cache, clips)
    assert all(clip_cache.cached_clip(cache, c) is not None for c in clips)
    assert not [p for p in cache.rglob("*") if p.name.endswith(".lock")]


def test_exit_codes_and_status_of_failures(server, tmp_path):
    clips = make_clips(server, "exits", 3)
    gone, flaky, good = clips
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    server.fail(f"{gone.ytid}.m4a", 410, times=1)
    server.fail(f"{flaky.ytid}.m4a", 503, times=2)
    first = subprocess.run(fetch_args(server, data, cache, "--max-attempts", "1"), capture_output=True, text=True)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "1 fetched" in first.stdout and "server_error" in first.stdout

    status = subprocess.run(cli("status", "--audio-cache-dir", str(cache), "--missing-csv", str(tmp_path / "m.csv")),
                            capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert "permanent  1" in status.stdout and "transient  1" in status.stdout
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert {(r["ytid"], r["status"], r["reason"]) for r in rows} == {
        (gone.ytid, "permanent", "gone"), (flaky.ytid, "transient", "server_error")}
    assert all(r["start_s"] == "2.0" and r["end_s"] == "6.0" for r in rows)

    # Second run: the 410 is not retried, the 503 fails once more, third run gets it: 0.
    second = subprocess.run(fetch_args(server, data, cache, "--max-attempts", "1"), capture_output=True, text=True)
    assert second.returncode == 1
    third = subprocess.run(fetch_args(server, data, cache, "--max-attempts", "1"), capture_output=True, text=True)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "1 fetched, 1 already cached, 1 unavailable" in third.stdout

    for bad in (["--num-shards", "2", "--shard-index", "2"], ["--url-template", "http://x/{id}"],
                ["--sample-rate", "0"], ["--cookies", str(tmp_path / "missing.txt")]):
        usage = subprocess.run(fetch_args(server, data, cache, *bad), capture_output=True, text=True)
        assert usage.returncode == 2, (bad, usage.stderr)
    usage = subprocess.run(cli("fetch", "audioset", "--data-dir", str(tmp_path / "nowhere")),
                           capture_output=True, text=True)
    assert usage.returncode == 1 and "nowhere" in usage.stderr  # an input that is not there, as for prepare


def test_pip_only_ffmpeg_and_nothing_written_outside_the_cache(server, tmp_path):
    (clip,) = make_clips(server, "nopath", 1)
    home, cwd, empty_bin = tmp_path / "home", tmp_path / "cwd", tmp_path / "bin"
    for d in (home, cwd, empty_bin):
        d.mkdir()
    cache = tmp_path / "cache"
    code = (
        "import sys, imageio_ffmpeg\n"
        "from audio_dialogues.sources.clips import Clip\n"
        "from audio_dialogues.fetch import FetchOptions, fetch_clips\n"
        f"r = fetch_clips([Clip({clip.ytid!r}, 2.0, 6.0)], cache_dir={str(cache)!r}, progress=False,\n"
        f"                options=FetchOptions(url_template={server.url_template('m4a')!r}))\n"
        "assert r.ffmpeg == imageio_ffmpeg.get_ffmpeg_exe(), r.ffmpeg\n"
        "print(r.summary())\n"
        "sys.exit(r.exit_code)\n"
    )
    env = {**os.environ, "PATH": str(empty_bin), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("AUDIO_DIALOGUES_CACHE", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 fetched" in done.stdout
    got = sf.read(clip_cache.cached_clip(cache, clip), dtype="float32")[0]
    assert abs(len(got) - CLIP_S * 16000) <= 1
    # imageio-ffmpeg ships ffmpeg 9, whose input seeking alone lands ~20 ms (322 samples) late on AAC: the
    # cut must still start at the source's sample for 2 s (ffmpeg 9 leaves a sub-sample offset, hence
    # a looser correlation than ffmpeg 5's 0.9999 on this 2.5 kHz-at-the-end sweep).
    truth = chirp(12.0, 16000)[2 * 16000:6 * 16000]
    lag = max(range(-400, 400), key=lambda k: float(np.dot(got[1000 + k:61000 + k], truth[1000:61000])))
    assert lag == 0
    assert np.corrcoef(got[:63000], truth[:63000])[0, 1] > 0.99
    assert not list(home.iterdir()) and not list(cwd.iterdir())


def test_release_shape_records_get_their_times_from_the_strong_labels(server, tmp_path):
    # The authors' release names 'Y<ytid>.wav' only; the window comes from a strong-label segment_id,
    # '<ytid>_<start ms>', whose ytid itself contains '_' (and here starts with '-').
    ytid = "-q_W_e_R_t_"
    server.add(f"{ytid}.m4a", server.source)
    data = tmp_path / "data"
    data.mkdir()
    (data / "audioset_test.json").write_text(json.dumps(
        [{"audio_id": f"Y{ytid}.wav", "dialogue": [{"user": "What is it?", "assistant": "A sweep."}]}]))
    tsv = tmp_path / "strong.tsv"
    tsv.write_text(f"segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n{ytid}_1500\t0.0\t1.0\t/m/x\n")
    cache = tmp_path / "cache"
    without = subprocess.run(fetch_args(server, data, cache), capture_output=True, text=True)
    assert without.returncode == 2 and "--strong-labels" in without.stderr
    done = subprocess.run(fetch_args(server, data, cache, "--strong-labels", str(tsv)), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # AudioSet segments are 10 s; the source is 12 s long, so [1.5, 11.5) fits.
    path = clip_cache.cached_clip(cache, Clip(ytid, 1.5, 11.5))
    assert path is not None and path.name == f"{ytid}_1500_11500.flac"
    got = sf.read(path, dtype="float32")[0]
    truth = chirp(12.0, 16000)[24000:184000]
    lag = max(range(-400, 400), key=lambda k: float(np.dot(got[1000 + k:61000 + k], truth[1000:61000])))
    assert len(got) == 160000 and lag == 0
