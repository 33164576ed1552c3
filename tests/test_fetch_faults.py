"""``audio-dialogues fetch`` when the environment fails: the cache, the network, secrets, local audio.

Real yt-dlp and ffmpeg against ``tests/media_server.py`` on 127.0.0.1 (YouTube is never reachable from
tests). Faults are made real where Linux lets a test do so without privileges, through ``unshare``
(user namespaces):

* a full disk is a real 320 kB tmpfs mounted over the cache (ENOSPC for ffmpeg and for our own writes);
* a read-only cache is a read-only bind mount (EROFS);
* "offline" is a fresh network namespace whose only interface is down: DNS fails (the resolver cannot
  be reached) and every connection is unreachable, so nothing can leave the machine. Connection
  refused is a closed port on 127.0.0.1.

Where ``unshare`` is not permitted those tests skip, except under ``CI``, where they fail.
"""

from __future__ import annotations

import csv
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from audio_dialogues.audio import cache as clip_cache
from audio_dialogues.fetch import journal
from audio_dialogues.sources.clips import Clip
from tests.media_server import CLIP_S, MediaServer, chirp, make_clips, source_server, write_annotations, write_media
from tests.tools import needs_unshare

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with source_server(tmp_path_factory.mktemp("media")) as srv:
        yield srv


def fetch_cmd(url_template: str, data: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "audio_dialogues.cli", "fetch", "audioset", "--data-dir", str(data),
            "--audio-cache-dir", str(cache), "--url-template", url_template, "--workers", "2", "--no-progress",
            *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def in_namespace(setup: str, cmd: list[str], after: str = "", flags: str = "-rm", timeout: float = 120
                 ) -> subprocess.CompletedProcess:
    """Run ``cmd`` inside ``unshare <flags>`` after the shell commands ``setup``; ``after`` runs there too."""
    script = f"set -e; {setup}; set +e; {shlex.join(cmd)}; rc=$?; {after or 'true'}; exit $rc"
    return subprocess.run(["unshare", flags, "sh", "-c", script], capture_output=True, text=True, env=env(),
                          timeout=timeout, cwd=ROOT)


def journal_statuses(cache: Path) -> list[str]:
    return [e.status for e in journal.read_entries(journal.journal_files(cache))]


# --- the cache -----------------------------------------------------------------------------------


def test_a_cache_that_is_a_file_is_named_as_such(server, tmp_path):
    clips = make_clips(server, "cfile", 2)
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    done = subprocess.run(fetch_cmd(server.url_template("m4a"), data, cache), capture_output=True, text=True,
                          env=env(), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the clip cache {cache} cannot be written: a file stands where a folder should be" in done.stderr
    assert "Traceback" not in done.stderr and cache.read_text() == "not a folder"
    assert server.requests[f"{clips[0].ytid}.m4a"] == 0
    status = subprocess.run([sys.executable, "-m", "audio_dialogues.cli", "status", "--audio-cache-dir", str(cache)],
                            capture_output=True, text=True, env=env())
    assert status.returncode == 1 and "is a file, not a folder" in status.stderr


@needs_unshare
def test_a_read_only_cache_is_named_as_such_and_nothing_is_recorded(server, tmp_path):
    clips = make_clips(server, "ronly", 3)
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    # One clip fetched while the cache was writable, then the cache turns read-only.
    first = subprocess.run(fetch_cmd(server.url_template("m4a"), write_annotations(tmp_path / "one", clips[:1]),
                                     cache), capture_output=True, text=True, env=env(), timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    done = in_namespace(f"mount --bind {cache} {cache} && mount -o remount,ro,bind {cache}",
                        fetch_cmd(server.url_template("m4a"), data, cache))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the file system is read-only" in done.stderr and str(cache) in done.stderr
    assert "Traceback" not in done.stderr and "1 already cached" in done.stdout
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before
    assert journal_statuses(cache) == ["ok"]


@needs_unshare
def test_a_full_disk_stops_the_run_and_no_clip_is_recorded_as_failing(server, tmp_path):
    """A 320 kB tmpfs (really full: ENOSPC) holds about two 4 s clips; the run must stop at the third."""
    clips = make_clips(server, "fulld", 8)
    data = write_annotations(tmp_path / "data", clips)
    cache, out = tmp_path / "cache", tmp_path / "after"
    cache.mkdir()
    out.mkdir()
    started = time.monotonic()
    done = in_namespace(f"mount -t tmpfs -o size=320k tmpfs {cache}",
                        fetch_cmd(server.url_template("m4a"), data, cache, "--workers", "1"),
                        after=f"cp -a {cache}/. {out}/")  # the tmpfs goes away with the namespace
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the disk is full" in done.stderr and str(cache) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
    statuses = journal_statuses(out)
    assert statuses and set(statuses) == {"ok"}, statuses  # nothing recorded as failing verification
    for clip in clips:
        path = clip_cache.cached_clip(out, clip)
        if path is not None:
            assert sf.info(path).frames == CLIP_S * 16000
    assert 0 < sum(clip_cache.cached_clip(out, c) is not None for c in clips) < len(clips)
    # With room again, the same command finishes the job from where it stopped.
    done = subprocess.run(fetch_cmd(server.url_template("m4a"), data, out), capture_output=True, text=True,
                          env=env(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(clip_cache.cached_clip(out, c) is not None for c in clips)


# --- the network ---------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_stopped_offline(done: subprocess.CompletedProcess, elapsed: float, cache: Path, detail: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert elapsed < 60
    assert "the network is unreachable" in done.stderr and detail in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert journal_statuses(cache) == []  # no clip recorded as failing: nothing was their fault


def test_connection_refused_stops_the_whole_run_at_once(tmp_path):
    clips = [Clip(f"refused{i:04d}", 1.0, 3.0) for i in range(20)]
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    port = closed_port()
    started = time.monotonic()
    done = subprocess.run(fetch_cmd(f"http://127.0.0.1:{port}/media/{{ytid}}.m4a", data, cache), capture_output=True,
                          text=True, env=env(), timeout=120)
    assert_stopped_offline(done, time.monotonic() - started, cache, f"127.0.0.1:{port} (Connection refused)")


@needs_unshare
@pytest.mark.parametrize("url,detail", [
    ("http://media.invalid/media/{ytid}.m4a", "cannot resolve media.invalid"),
    ("http://127.0.0.1:8/media/{ytid}.m4a", "Network is unreachable"),
], ids=["dns", "unreachable"])
def test_no_network_at_all_stops_the_whole_run_at_once(tmp_path, url, detail):
    clips = [Clip(f"offline{i:04d}", 1.0, 3.0) for i in range(20)]
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    started = time.monotonic()
    done = in_namespace("true", fetch_cmd(url, data, cache), flags="-rn")
    assert_stopped_offline(done, time.monotonic() - started, cache, detail)


def test_the_host_going_away_midway_stops_the_run(tmp_path):
    import threading

    from audio_dialogues.fetch import FetchOptions, NetworkUnreachable, fetch_clips

    source = write_media(tmp_path / "src.m4a", 12.0, 44100)
    clips = [Clip(f"midway{i:05d}", 2.0, 6.0) for i in range(12)]
    server = MediaServer().start()
    for clip in clips:
        server.add(f"{clip.ytid}.m4a", source)
    cache = tmp_path / "cache"

    def stop_after_two_clips() -> None:  # the host vanishes once two clips are in
        while len(list(cache.glob("*/*.json"))) < 2:
            time.sleep(0.01)
        server.stop()

    watcher = threading.Thread(target=stop_after_two_clips, daemon=True)
    watcher.start()
    opts = FetchOptions(url_template=server.url_template("m4a"), workers=1, backoff_s=5.0, max_attempts=5)
    started = time.monotonic()
    with pytest.raises(NetworkUnreachable, match="Connection refused") as stopped:
        fetch_clips(clips, cache_dir=cache, options=opts, progress=False)
    assert time.monotonic() - started < 60  # in-flight ffmpeg reads give up after their reconnect attempts
    report = stopped.value.report
    assert report.ok >= 2 and report.transient == 0 and report.pending == len(clips) - report.ok
    assert set(journal_statuses(cache)) == {"ok"}


# --- secrets -------------------------------------------------------------------------------------

SECRET = "s3cr3t-session-4d1f"


def files_containing(folder: Path, needle: str) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle.encode() in path.read_bytes():
                    found.append(path)
            except OSError:
                pass
    return found


def test_cookies_never_land_in_the_cache_or_a_temp_folder_even_after_sigkill(server, tmp_path):
    clips = make_clips(server, "cookie", 8)
    data = write_annotations(tmp_path / "data", clips)
    cookies = tmp_path / "secret" / "cookies.txt"
    cookies.parent.mkdir()
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{SECRET}\n")
    cookies.chmod(0o600)
    before = (cookies.read_bytes(), cookies.stat().st_mtime_ns)
    cache, tmp, home = tmp_path / "cache", tmp_path / "tmp", tmp_path / "home"
    tmp.mkdir()
    home.mkdir()
    run_env = {**env(), "TMPDIR": str(tmp), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    cmd = fetch_cmd(server.url_template("m4a"), data, cache, "--cookies", str(cookies), "--workers", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=run_env,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(cache.glob("*/*.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert server.cookies, "the cookies were never sent: the test proves nothing"
    for folder in (cache, tmp, home):
        assert files_containing(folder, SECRET) == [], folder
    done = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for folder in (cache, tmp, home):
        assert files_containing(folder, SECRET) == [], folder
    assert (cookies.read_bytes(), cookies.stat().st_mtime_ns) == before
    assert all(clip_cache.cached_clip(cache, c) is not None for c in clips)


def test_with_cookies_yt_dlp_caches_nothing_on_disk(tmp_path):
    from audio_dialogues.fetch import FetchOptions
    from audio_dialogues.fetch.downloader import Downloader, _Logger

    cookies = tmp_path / "c.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    with_cookies = Downloader(FetchOptions(cookies=cookies), "ffmpeg", tmp_path)._base_params(_Logger())
    without = Downloader(FetchOptions(), "ffmpeg", tmp_path)._base_params(_Logger())
    # yt-dlp's cache holds tokens bound to a signed-in session: off with cookies, inside the cache without.
    assert with_cookies["cachedir"] is False and with_cookies["cookiefile"] == str(cookies)
    assert without["cachedir"] == str(tmp_path / ".yt-dlp")


# --- local audio in fetch and status -------------------------------------------------------------


def test_fetch_and_status_find_the_users_audio_as_prepare_does(server, tmp_path):
    clips = make_clips(server, "local", 4)
    data = write_annotations(tmp_path / "data", clips)
    audio, cache = tmp_path / "audio", tmp_path / "cache"
    audio.mkdir()
    sf.write(audio / f"Y{clips[0].ytid}.wav", chirp(10.0, 16000), 16000)
    sf.write(audio / f"{clips[1].ytid}_2.0_6.0.flac", chirp(4.0, 16000), 16000)
    done = subprocess.run(fetch_cmd(server.url_template("m4a"), data, cache, "--audio-dir", str(audio)),
                          capture_output=True, text=True, env=env(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 fetched, 0 already cached, 2 in your audio folders" in done.stdout
    assert server.requests[f"{clips[0].ytid}.m4a"] == server.requests[f"{clips[1].ytid}.m4a"] == 0
    status = subprocess.run(
        [sys.executable, "-m", "audio_dialogues.cli", "status", "audioset", "--data-dir", str(data),
         "--audio-cache-dir", str(cache), "--audio-dir", str(audio), "--present-csv", str(tmp_path / "present.csv"),
         "--missing-csv", str(tmp_path / "missing.csv")], capture_output=True, text=True, env=env())
    assert status.returncode == 0, status.stderr
    assert "ok         4" in status.stdout and "present: 2 in your audio folders, 2 in the cache" in status.stdout
    rows = {r["ytid"]: r for r in csv.DictReader(open(tmp_path / "present.csv"))}
    assert {y: r["found_in"] for y, r in rows.items()} == {
        clips[0].ytid: "audio_dir", clips[1].ytid: "audio_dir", clips[2].ytid: "cache", clips[3].ytid: "cache"}
    # A whole video's window was cut into the cache, as prepare does; a window file is used as it is.
    assert rows[clips[0].ytid]["path"] == str(clip_cache.cached_clip(cache, clips[0]))
    assert rows[clips[1].ytid]["path"] == str(audio / f"{clips[1].ytid}_2.0_6.0.flac")
    assert rows[clips[2].ytid]["path"] == str(clip_cache.cached_clip(cache, clips[2]))
    assert list(csv.reader(open(tmp_path / "missing.csv"))) == [list(journal.MISSING_COLUMNS)]
    # Without the folder, status misses the window file; the whole video's cut window is in the cache.
    status = subprocess.run(
        [sys.executable, "-m", "audio_dialogues.cli", "status", "audioset", "--data-dir", str(data),
         "--audio-cache-dir", str(cache)], capture_output=True, text=True, env=env())
    assert "ok         3" in status.stdout and "pending    1" in status.stdout, status.stdout


# --- the cached re-run's fast path: the clip list of unchanged annotations ----------------------


def test_a_rerun_reuses_the_clip_list_until_an_input_changes(server, tmp_path, monkeypatch, capsys):
    """Reading and validating annotations is most of a cached re-run; their clip list is kept per input state."""
    from audio_dialogues import cli
    from audio_dialogues.sources import records

    clips = make_clips(server, "index", 3)
    data = write_annotations(tmp_path / "data", clips)
    cache = tmp_path / "cache"
    args = ["fetch", "audioset", "--data-dir", str(data), "--audio-cache-dir", str(cache), "--url-template",
            server.url_template("m4a"), "--no-progress"]
    reads = []
    real = records.records_by_split
    monkeypatch.setattr(records, "records_by_split", lambda *a, **k: reads.append(1) or real(*a, **k))
    assert cli.main(args) == 0 and len(reads) == 1
    assert cli.main(args) == 0 and len(reads) == 1  # unchanged files: the stored list
    assert "3 already cached" in capsys.readouterr().out
    # An edit (even keeping the size) is read and validated again; a bad record is still an error.
    path = data / "audioset_test.jsonl"
    text = path.read_text()
    path.write_text(text.replace('"start_s": 2.0', '"start_s": 3.0', 1))
    assert cli.main(args) == 0 and len(reads) == 2
    assert "1 fetched, 2 already cached" in capsys.readouterr().out
    path.write_text(text.replace('"start_s": 2.0', '"start_s": "2"', 1))
    assert cli.main(args) == 1  # bad input, as for prepare
    assert "start_s" in capsys.readouterr().err and len(reads) == 3
    # A damaged stored list is ignored and replaced, never trusted.
    path.write_text(text)
    assert cli.main(args) == 0 and len(reads) == 4
    (stored,) = (cache / "index").glob("clips-audioset-*.json")
    stored.write_text('[["abcdefghijk\\n", 0, 10]]')
    assert cli.main(args) == 0 and len(reads) == 5
    assert "3 already cached" in capsys.readouterr().out
