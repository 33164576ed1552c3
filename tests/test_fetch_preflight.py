"""The JavaScript runtime, ``fetch --check`` and yt-dlp's extension points, with the real tools, offline.

Nothing here reaches YouTube or the package index: YouTube-template checks go through a proxy that is
the local media server (which only accepts the connection), or run in a network namespace with no
network at all; the index is asked at a local URL ($AUDIO_DIALOGUES_INDEX_URL).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import deno
import pytest

from audio_dialogues.fetch import FetchError, FetchOptions, fetch_clips, journal, jsruntime
from audio_dialogues.fetch.downloader import Downloader, _Logger
from audio_dialogues.sources.clips import Clip
from tests.media_server import MediaServer, write_annotations, write_media

YOUTUBE = "https://www.youtube.com/watch?v={ytid}"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    with MediaServer() as server:
        server.add("src.m4a", write_media(folder / "src.m4a", 12.0, 44100))
        server.add("pypi.json", json.dumps({"info": {"version": "2999.1.1"}}).encode())
        yield server


def deno_version() -> str:
    out = subprocess.run([deno.find_deno_bin(), "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


# --- the runtime ------------------------------------------------------------------------------------


def test_the_bundled_deno_is_found_and_yt_dlp_configured_like_the_fetcher_reports_it(tmp_path, monkeypatch):
    import yt_dlp

    monkeypatch.setenv("PATH", "/nonexistent")  # no runtime on PATH: only the explicit path can find it
    runtimes = jsruntime.js_runtimes()
    assert runtimes == {"deno": {"path": deno.find_deno_bin()}}
    info = jsruntime.runtime_info("deno", runtimes["deno"]["path"])
    assert info is not None and info.supported and info.version == deno_version()

    class Capture(_Logger):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def debug(self, msg: str) -> None:
            self.lines.append(msg)

    downloader = Downloader(FetchOptions(), "ffmpeg", tmp_path)
    capture = Capture()
    params = {**downloader._base_params(capture), "verbose": True}
    with yt_dlp.YoutubeDL(params) as ydl:  # auto_init: prints the verbose header
        assert ydl._js_runtimes["deno"].info.path == deno.find_deno_bin()
    assert f"[debug] JS runtimes: deno-{deno_version()}" in capture.lines, capture.lines


def test_a_users_runtime_wins(tmp_path, monkeypatch):
    own = tmp_path / "bin"
    own.mkdir()
    (own / "deno").symlink_to(deno.find_deno_bin())
    monkeypatch.setenv("PATH", str(own))
    assert jsruntime.js_runtimes() == {"deno": {"path": str(own / "deno")}}
    assert jsruntime.js_runtimes(["node", "deno:/opt/deno"]) == {"node": {"path": None},
                                                                 "deno": {"path": "/opt/deno"}}
    with pytest.raises(ValueError, match="unknown runtime 'rhino'"):
        FetchOptions(js_runtimes=("rhino:/usr/bin/rhino",))


def test_fetch_stops_before_any_request_when_the_runtime_is_missing(media, tmp_path):
    opts = FetchOptions(url_template=YOUTUBE, proxy=f"http://127.0.0.1:{media.port}",
                        js_runtimes=(f"deno:{tmp_path / 'no-deno'}",))
    media.reset_counters()
    with pytest.raises(FetchError, match=r"JS runtime: deno \(.*no-deno\) does not run.*--js-runtime"):
        fetch_clips([Clip("abcdefghijk", 1.0, 3.0)], cache_dir=tmp_path / "cache", options=opts, progress=False)
    assert sum(media.requests.values()) == 0


# --- fetch --check ----------------------------------------------------------------------------------


def check(*args: str, env: dict | None = None, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "audio_dialogues.cli", "fetch", "--check", *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def lines(proc: subprocess.CompletedProcess) -> dict[str, str]:
    return {line.split(":", 1)[0][6:]: line for line in proc.stdout.splitlines() if ":" in line}


@pytest.fixture
def local_env(media):
    """YouTube's template through the local server as proxy; the package index answered locally."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["AUDIO_DIALOGUES_INDEX_URL"] = media.url("pypi.json")
    return env, ("--proxy", f"http://127.0.0.1:{media.port}")


def test_check_all_present(local_env):
    env, proxy = local_env
    proc = check(*proxy, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = lines(proc)
    assert got["yt-dlp"].startswith("NOTE") and "2999.1.1 is on the package index" in got["yt-dlp"]
    assert got["JS runtime"] == f"OK    JS runtime: deno {deno_version()} ({deno.find_deno_bin()})"
    assert got["EJS scripts"].startswith("OK    EJS scripts: yt-dlp-ejs ")
    assert got["ffmpeg"].startswith("OK")
    assert got["cookies"].startswith("OK    cookies: none given")
    assert got["proxy"].startswith("OK    proxy: http://127.0.0.1:")
    assert got["YouTube connection"].startswith("OK    YouTube connection: answers (127.0.0.1:")
    assert proc.stdout.rstrip().endswith("ready to fetch")


def test_check_a_missing_runtime(local_env, tmp_path):
    env, proxy = local_env
    proc = check(*proxy, "--js-runtime", f"deno:{tmp_path / 'nothing'}", env=env)
    assert proc.returncode == 1
    got = lines(proc)
    assert got["JS runtime"].startswith("FAIL") and "--js-runtime NAME[:PATH]" in got["JS runtime"]
    assert [k for k, v in got.items() if v.startswith("FAIL")] == ["JS runtime"]
    assert proc.stderr.strip() == "missing: JS runtime"


def test_check_a_missing_ffmpeg(local_env, tmp_path):
    env, proxy = local_env
    # No ffmpeg on PATH, and imageio-ffmpeg pointed at nothing (its own override variable).
    env = {**env, "PATH": str(tmp_path), "IMAGEIO_FFMPEG_EXE": str(tmp_path / "no-ffmpeg")}
    proc = check(*proxy, env=env)
    assert proc.returncode == 1, proc.stdout
    got = lines(proc)
    assert got["ffmpeg"].startswith("FAIL") and "install ffmpeg" in got["ffmpeg"]
    assert got["JS runtime"].startswith("OK")  # found by its path, not PATH
    assert proc.stderr.strip() == "missing: ffmpeg"


def test_fetch_stops_before_any_request_when_ffmpeg_does_not_run(media, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))  # imageio-ffmpeg's override
    media.reset_counters()
    with pytest.raises(FetchError, match="ffmpeg: .*no-ffmpeg does not run"):
        fetch_clips([Clip("abcdefghijk", 1.0, 3.0)], cache_dir=tmp_path / "cache",
                    options=FetchOptions(url_template=media.url_template("m4a")), progress=False)
    assert sum(media.requests.values()) == 0


YT_LINE = ".youtube.com\tTRUE\t/\tTRUE\t{expires}\t{name}\tv\n"


@pytest.mark.parametrize("content,expected", [
    ("# Netscape HTTP Cookie File\n" + YT_LINE.format(expires=1_000_000_000, name="SID")
     + YT_LINE.format(expires=1_000_000_001, name="HSID"), "all 2 YouTube cookies have expired"),
    ('[{"domain": ".youtube.com", "name": "SID", "value": "v"}]', "not a Netscape cookies file"),
    ("# Netscape HTTP Cookie File\n.youtube.com SID v\nthis is not a cookie\n",
     "holds no cookies in Netscape format (2 malformed lines)"),
    ("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc\n", "holds no YouTube cookies"),
], ids=["expired", "json", "malformed", "not-youtube"])
def test_check_a_bad_cookies_file(local_env, tmp_path, content, expected):
    env, proxy = local_env
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(content)
    proc = check(*proxy, "--cookies", str(cookies), env=env)
    assert proc.returncode == 1
    got = lines(proc)
    assert got["cookies"].startswith("FAIL") and expected in got["cookies"], got["cookies"]
    assert "export them again" in got["cookies"] or "Netscape" in got["cookies"]
    assert proc.stderr.strip() == "missing: cookies"


def test_check_good_cookies_are_counted(local_env, tmp_path):
    env, proxy = local_env
    later = int(time.time()) + 86400 * 30
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n" + YT_LINE.format(expires=later, name="SID")
                       + "#HttpOnly_" + YT_LINE.format(expires=1_000_000_000, name="OLD")
                       + ".example.com\tTRUE\t/\tFALSE\t0\tx\ty\n")
    proc = check(*proxy, "--cookies", str(cookies), env=env)
    assert proc.returncode == 0, proc.stdout
    expected = f"2 YouTube cookies of 3, 1 expired, valid until {time.strftime('%Y-%m-%d', time.gmtime(later))}"
    assert expected in lines(proc)["cookies"]


def test_a_bad_cookies_file_stops_fetch_with_the_fix(media, tmp_path):
    cookies = tmp_path / "cookies.txt"
    cookies.write_text('[{"domain": ".youtube.com"}]')
    opts = FetchOptions(url_template=YOUTUBE, proxy=f"http://127.0.0.1:{media.port}", cookies=cookies)
    with pytest.raises(FetchError, match="not a Netscape cookies file.*not JSON"):
        fetch_clips([Clip("abcdefghijk", 1.0, 3.0)], cache_dir=tmp_path / "cache", options=opts, progress=False)


def test_check_offline_blames_the_network_not_the_tools():
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("no network namespaces here (unshare -rn)")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "AUDIO_DIALOGUES_INDEX_URL"}
    proc = check(env=env, prefix=(unshare, "-rn"))  # a network namespace with no network at all
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = lines(proc)
    assert got["yt-dlp"].startswith("OK") and "could not ask the package index" in got["yt-dlp"]
    assert got["YouTube connection"].startswith("FAIL  YouTube connection: unreachable: cannot resolve "
                                                "www.youtube.com")
    assert [k for k, v in got.items() if v.startswith("FAIL")] == ["YouTube connection"]
    assert proc.stderr.strip() == "missing: YouTube connection"


# --- extractor arguments and plugin folders ----------------------------------------------------------

PLUGIN = '''
from yt_dlp.extractor.common import InfoExtractor
from yt_dlp.utils import ExtractorError


class ADTestPluginIE(InfoExtractor):
    _VALID_URL = r"https?://127\\.0\\.0\\.1:\\d+/media/viaplugin-(?P<id>[^/?#]+)"

    def _real_extract(self, url):
        video_id = self._match_id(url)
        media = self._configuration_arg("media")
        if not media:
            raise ExtractorError("no media extractor argument", expected=True)
        base = url.split("/media/")[0]
        return {"id": video_id, "title": video_id, "url": f"{base}/media/{media[0]}", "ext": "m4a",
                "vcodec": "none", "duration": 12.0}
'''


def test_extractor_args_and_plugin_folders_reach_yt_dlp(media, tmp_path):
    plugins = tmp_path / "plugins"  # as yt-dlp's --plugin-dirs: a folder of plugin packages
    (plugins / "adtest" / "yt_dlp_plugins" / "extractor").mkdir(parents=True)
    (plugins / "adtest" / "yt_dlp_plugins" / "extractor" / "adtest.py").write_text(PLUGIN)
    clip = Clip("plugin00001", 2.0, 4.0)
    data = write_annotations(tmp_path / "data", [clip])
    template = f"http://127.0.0.1:{media.port}/media/viaplugin-{{ytid}}"

    def fetch(cache: str, *extra: str) -> list[dict]:
        """Fetch the clip into a new cache; the journal's entries for it."""
        proc = subprocess.run([sys.executable, "-m", "audio_dialogues.cli", "fetch", "audioset", "--data-dir",
                               str(data), "--audio-cache-dir", str(tmp_path / cache), "--url-template", template,
                               "--no-progress", "--max-attempts", "1", *extra],
                              capture_output=True, text=True, timeout=120, check=False)
        assert "Traceback" not in proc.stderr, proc.stderr
        return [json.loads(line) for p in journal.journal_files(tmp_path / cache)
                for line in p.read_text().splitlines() if line]

    # Without the folder, yt-dlp's generic extractor finds nothing at that URL (404).
    (entry,) = fetch("c1")
    assert entry["status"] != "ok" and "404" in entry["message"], entry
    # With the folder, the plugin's extractor handles the URL, and refuses without its argument.
    (entry,) = fetch("c2", "--plugin-dirs", str(plugins))
    assert entry["status"] != "ok" and "no media extractor argument" in entry["message"], entry
    # With both, the argument tells the plugin which file to serve: the clip arrives.
    (entry,) = fetch("c3", "--plugin-dirs", str(plugins), "--extractor-args", "adtestplugin:media=src.m4a")
    assert entry["status"] == "ok", entry
    assert len(list((tmp_path / "c3").rglob("*.flac"))) == 1


def test_extractor_args_are_parsed_by_yt_dlp(tmp_path):
    opts = FetchOptions(extractor_args=("youtube:player_client=web,mweb;po_token=web.gvs+TOKEN",
                                        "youtubetab:skip=webpage"))
    params = Downloader(opts, "ffmpeg", tmp_path)._base_params(_Logger())
    assert params["extractor_args"] == {"youtube": {"player_client": ["web", "mweb"], "po_token": ["web.gvs+TOKEN"]},
                                        "youtubetab": {"skip": ["webpage"]}}
    with pytest.raises(ValueError, match="it should be IE_KEY:ARGS"):
        FetchOptions(extractor_args=("player_client=web",))
    with pytest.raises(ValueError, match="not a folder"):
        FetchOptions(plugin_dirs=(tmp_path / "none",))


def test_cli_usage_without_config_names_what_is_needed():
    proc = subprocess.run([sys.executable, "-m", "audio_dialogues.cli", "fetch"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "CONFIG and --data-dir are required (except with --check)" in proc.stderr



def test_ffmpeg_runs_once_per_binary_in_a_process(tmp_path, monkeypatch):
    """Each fetch_clips call's preflight runs ffmpeg (~120 ms of CPU) only for a binary it has not run yet."""
    from audio_dialogues.fetch.preflight import check_ffmpeg

    runs = tmp_path / "runs"
    fake = tmp_path / "ffmpeg"
    fake.write_text(f"#!/bin/sh\necho run >> {runs}\necho 'ffmpeg version 9.9-test'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    options = FetchOptions(ffmpeg=str(fake))
    assert [check_ffmpeg(options).text for _ in range(3)] == [f"9.9-test ({fake})"] * 3
    assert runs.read_text().count("run") == 1
    fake.write_text(f"#!/bin/sh\necho run >> {runs}\necho 'ffmpeg version 9.10-test'\n")  # replaced: run again
    assert check_ffmpeg(options).text == f"9.10-test ({fake})"
    assert runs.read_text().count("run") == 2
