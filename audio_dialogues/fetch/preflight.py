"""Is everything a fetch needs there? ``audio-dialogues fetch --check``, and the tool part before every fetch.

One :class:`Check` per thing: yt-dlp (and whether the package index has a newer one), the JavaScript
runtime and the EJS solver scripts (needed for YouTube only), ffmpeg, the cookies file, the proxy, and
whether the video host answers. Each says OK or what to do. Offline, only the host check (and the
question to the package index) fail: the tools are judged on their own.

:func:`check_tools` is what :func:`~audio_dialogues.fetch.fetch_clips` runs before its first download: a
missing runtime or an unusable cookies file stops the run at once with the fix, instead of every clip
failing with "Requested format is not available" or a sign-in prompt.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..audio.ffmpeg import FfmpegNotFoundError, find_ffmpeg
from ..files import FileIdentity, input_problem
from . import jsruntime, network
from .options import FetchError, FetchOptions

#: The first yt-dlp that solves YouTube's challenges with EJS and an external runtime.
MIN_YT_DLP = "2025.11.12"
#: Where the newest yt-dlp is asked for (PyPI's JSON API); $AUDIO_DIALOGUES_INDEX_URL names a mirror's.
INDEX_URL = "https://pypi.org/pypi/yt-dlp/json"
INDEX_TIMEOUT_S = 3.0
UPGRADE = "pip install -U 'yt-dlp[default]'"

OK, FAIL, NOTE = "OK", "FAIL", "NOTE"


@dataclass
class Check:
    """One line of the preflight: ``status`` is OK, FAIL (needed and missing) or NOTE (advice only)."""

    name: str
    status: str
    text: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name}: {self.text}"


def is_youtube(options: FetchOptions) -> bool:
    """Whether the URL template is YouTube's: only then are a JS runtime and the EJS scripts needed."""
    host = (urlsplit(options.url("x" * 11)).hostname or "").lower()
    return host in ("youtu.be", "youtube.com") or host.endswith((".youtube.com", ".youtube-nocookie.com"))


# --- yt-dlp ---------------------------------------------------------------------------------------


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def check_yt_dlp(options: FetchOptions, index_url: str | None = None, timeout_s: float = INDEX_TIMEOUT_S) -> Check:
    """yt-dlp's version; whether the index has a newer one (YouTube changes break old releases within weeks)."""
    import urllib.request  # here: a fetch whose clips are all cached imports this module and never asks the index

    from yt_dlp.version import __version__ as version

    if _version_tuple(version) < _version_tuple(MIN_YT_DLP):
        return Check("yt-dlp", FAIL, f"{version} predates EJS ({MIN_YT_DLP}) and cannot solve YouTube's "
                                     f"challenges: {UPGRADE}")
    url = index_url or os.environ.get("AUDIO_DIALOGUES_INDEX_URL") or INDEX_URL
    proxy = options.proxy
    opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({"http": proxy, "https": proxy})]
                                           if proxy else []))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            newest = json.load(response)["info"]["version"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = getattr(err, "reason", None) or err
        return Check("yt-dlp", OK, f"{version} (could not ask the package index for a newer one: {reason})")
    if _version_tuple(newest) > _version_tuple(version):
        return Check("yt-dlp", NOTE, f"{version}; {newest} is on the package index (YouTube breaks old releases "
                                     f"often): {UPGRADE}")
    return Check("yt-dlp", OK, f"{version}, the newest on the package index")


# --- JavaScript runtime and solver scripts --------------------------------------------------------


def check_runtime(options: FetchOptions, needed: bool) -> Check:
    runtimes = jsruntime.js_runtimes(options.js_runtimes)
    info, problems = jsruntime.usable_runtime(runtimes)
    if info is not None:
        return Check("JS runtime", OK, f"{info.name} {info.version} ({info.path})")
    fix = ("reinstall the package's dependency (`pip install deno`), or give your own with --js-runtime "
           "NAME[:PATH] (deno, node >= 22, bun, quickjs)")
    why = "; ".join(problems) or "none configured"
    if not needed:
        return Check("JS runtime", NOTE, f"{why} (needed for YouTube only: {fix})")
    return Check("JS runtime", FAIL, f"{why}: YouTube's challenges cannot be solved and most formats are "
                                     f"missing; {fix}")


def check_ejs(needed: bool) -> Check:
    """The challenge solver scripts: the ``yt-dlp-ejs`` package of the version yt-dlp expects, else its copy."""
    # types-yt-dlp has no stub for this private module (yt-dlp's copy of the EJS scripts)
    from yt_dlp.extractor.youtube.jsc._builtin import vendor  # type: ignore[import-not-found]

    expected = vendor.VERSION
    try:
        import yt_dlp_ejs

        found: str | None = yt_dlp_ejs.version
    except ImportError:
        found = None
    if found is not None and _version_tuple(found)[:2] == _version_tuple(expected)[:2]:
        return Check("EJS scripts", OK, f"yt-dlp-ejs {found}")
    fix = f"pip install 'yt-dlp-ejs=={expected}' (or {UPGRADE}, which pins the pair)"
    if vendor.load_script("yt.solver.core.js"):
        have = f"yt-dlp-ejs {found} does not match yt-dlp ({expected}); " if found else ""
        return Check("EJS scripts", OK, f"{have}yt-dlp's own copy {expected}")
    why = f"yt-dlp-ejs {found} does not match yt-dlp ({expected})" if found else "yt-dlp-ejs is not installed"
    return Check("EJS scripts", FAIL if needed else NOTE, f"{why}: {fix}")


# --- ffmpeg, cookies, proxy, the host -------------------------------------------------------------


#: ffmpeg binaries that ran in this process, by path and identity: its version. ``ffmpeg -version`` costs
#: ~120 ms of CPU (its shared libraries load), paid again by every ``fetch_clips`` call of a long-lived
#: process otherwise; a binary replaced since (another identity) is run again.
_RAN: dict[tuple[str, FileIdentity], str] = {}


def check_ffmpeg(options: FetchOptions) -> Check:
    try:
        path = find_ffmpeg(options.ffmpeg)
    except (FfmpegNotFoundError, FetchError) as err:
        return Check("ffmpeg", FAIL, str(err))
    try:
        key: tuple[str, FileIdentity] | None = (path, FileIdentity.of(path))
    except OSError:
        key = None  # running it says what is wrong
    if key in _RAN:
        return Check("ffmpeg", OK, f"{_RAN[key]} ({path})")
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        return Check("ffmpeg", FAIL, f"{path} does not run ({err}): install ffmpeg or `pip install imageio-ffmpeg`")
    words = out.split()
    version = words[2] if len(words) > 2 and words[:2] == ["ffmpeg", "version"] else "version unknown"
    if key is not None:
        _RAN[key] = version
    return Check("ffmpeg", OK, f"{version} ({path})")


@dataclass
class CookieFacts:
    path: str
    total: int
    youtube: int
    youtube_expired: int
    #: Lines yt-dlp skips as not Netscape-formatted.
    skipped: int
    #: The latest expiry of the YouTube cookies, as a Unix time (``None``: session cookies only or none).
    latest_expiry: float | None

    def summary(self) -> str:
        text = f"{self.path}: {self.youtube} YouTube cookies of {self.total}"
        if self.youtube_expired:
            text += f", {self.youtube_expired} expired"
        if self.latest_expiry:
            text += f", valid until {time.strftime('%Y-%m-%d', time.gmtime(self.latest_expiry))}"
        if self.skipped:
            text += f"; {self.skipped} malformed lines skipped"
        return text


def read_cookies(path: str | os.PathLike, youtube: bool) -> CookieFacts:
    """Read a cookies file as yt-dlp will; :class:`FetchError` with the fix if it cannot help.

    yt-dlp itself skips malformed lines with a warning and treats a file of only those as no cookies,
    so a bad export shows up only as "Sign in to confirm you're not a bot" on every clip.
    """
    import http.cookiejar

    from yt_dlp.cookies import YoutubeDLCookieJar

    name = os.path.expanduser(os.fspath(path))
    export = "export them again (Netscape format) from a browser signed in to YouTube; see docs/fetch.md"
    if problem := input_problem(name):  # a FIFO or a link to /dev/zero would block or never end
        raise FetchError(f"cookies file {path} {problem}")
    jar = YoutubeDLCookieJar(name)
    warnings = io.StringIO()
    try:
        with contextlib.redirect_stderr(warnings):
            jar.load()
    except http.cookiejar.LoadError as err:
        raise FetchError(f"cookies file {path} is not a Netscape cookies file ({err}): {export}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise FetchError(f"cookies file {path} cannot be read: {err}") from err
    skipped = warnings.getvalue().count("skipping cookie file entry")
    now = time.time()
    yt = [c for c in jar if c.domain.lstrip(".") == "youtube.com" or c.domain.endswith(".youtube.com")]
    expired = sum(1 for c in yt if c.expires and c.expires < now)
    facts = CookieFacts(name, len(jar), len(yt), expired, skipped,
                        max((float(c.expires) for c in yt if c.expires), default=None))
    if not len(jar):
        raise FetchError(f"cookies file {path} holds no cookies in Netscape format ({skipped} malformed lines): "
                         f"{export}")
    if youtube and not yt:
        raise FetchError(f"cookies file {path} holds no YouTube cookies: {export}")
    if youtube and expired == len(yt):
        raise FetchError(f"cookies file {path}: all {expired} YouTube cookies have expired: {export}")
    return facts


def check_cookies(options: FetchOptions, youtube: bool) -> Check:
    if not options.cookies:
        return Check("cookies", OK, "none given (give --cookies when YouTube asks to sign in or confirm "
                                    "you are not a bot)" if youtube else "none given")
    try:
        return Check("cookies", OK, read_cookies(options.cookies, youtube).summary())
    except FetchError as err:
        return Check("cookies", FAIL, str(err))


def check_proxy(options: FetchOptions) -> Check:
    proxy = network.proxy(options)
    if proxy is None:
        return Check("proxy", OK, "none")
    if network.endpoint(options) is None:
        return Check("proxy", FAIL, f"{proxy} is not a proxy URL (scheme://host:port)")
    return Check("proxy", OK, proxy + (" (--proxy)" if options.proxy else " (from the environment)"))


def check_host(options: FetchOptions, youtube: bool, timeout_s: float = 10.0) -> Check:
    name = "YouTube connection" if youtube else "host connection"
    why = network.unreachable(options, timeout_s)
    if why is None:
        target = network.endpoint(options)
        where = f"{target[0]}:{target[1]}" if target else options.url("{ytid}")
        return Check(name, OK, f"answers ({where})")
    return Check(name, FAIL, f"unreachable: {why.removeprefix('the network is unreachable: ')} (check the "
                             "network, or --proxy; the lines above judge the tools on their own)")


def check_all(options: FetchOptions) -> list[Check]:
    """Every line of ``fetch --check``, in order."""
    youtube = is_youtube(options)
    return [check_yt_dlp(options), check_runtime(options, youtube), check_ejs(youtube), check_ffmpeg(options),
            check_cookies(options, youtube), check_proxy(options), check_host(options, youtube)]


def check_tools(options: FetchOptions) -> None:
    """The tool part of the preflight that needs probing, before a fetch's first download.

    Raises :class:`FetchError` naming every fix: an ffmpeg that does not run (a stale
    ``IMAGEIO_FFMPEG_EXE``, a broken install) and, when the URL template is YouTube's, a missing JS
    runtime or solver scripts. Other hosts (like the tests' local server) are read by yt-dlp's generic
    extractor without JavaScript. The cookies file is checked when the fetch starts (:func:`read_cookies`).
    Needs no network and asks no index: one runtime ``--version`` per run, and one ``ffmpeg -version`` per
    ffmpeg binary in a process (:func:`check_ffmpeg`).
    """
    checks = [check_ffmpeg(options)]
    if is_youtube(options):
        checks += [check_runtime(options, True), check_ejs(True)]
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        raise FetchError("; ".join(f"{c.name}: {c.text}" for c in failed))


def missing(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if c.status == FAIL]

