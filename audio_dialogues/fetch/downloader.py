"""One clip download: yt-dlp's Python API cutting the window with ffmpeg in a single pass.

See :mod:`audio_dialogues.fetch` for why the cut is done this way.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..audio.ffmpeg import header_duration
from ..errors import AudioDialoguesError
from ..sources.clips import Clip
from . import journal
from .jsruntime import js_runtimes
from .options import FetchOptions
from .report import PERMANENT, TRANSIENT

if TYPE_CHECKING:
    from yt_dlp.extractor.common import InfoExtractor

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



class ClipFailure(AudioDialoguesError):
    """A clip attempt failed; ``info`` is what yt-dlp had learnt of the source by then (may be empty)."""

    def __init__(self, status: str, reason: str, message: str, *, info: dict | None = None,
                 frames: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.info = info or {}
        #: Frames the cut held, when it decoded at all (tells a repeatable result from a chance one).
        self.frames = frames
        #: Set when the cut came out empty or short although the source claims to be long enough.
        self.suspect_truncated = ""


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


class Downloader:
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
        #: The one extractor for the URL template's URLs, found once. Otherwise each YoutubeDL loads all
        #: ~1,800 extractors (0.5 s of CPU) and matches every URL against their patterns (~15 ms per clip).
        self._extractor: type[InfoExtractor] | None = None
        self._opened: list = []
        self._opened_lock = threading.Lock()
        self._js_runtimes = js_runtimes(options.js_runtimes)
        self._extractor_args = options.extractor_args_dict()

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
            "match_filter": self._match_filter,
        }
        if o.cookies:
            # Read in place, never copied: yt-dlp only writes a cookie jar back in close(), which is
            # told not to (see close()), so no copy of the secret exists that a kill could leave behind.
            params["cookiefile"] = os.path.expanduser(o.cookies)
            # yt-dlp caches tokens bound to the signed-in session (YouTube's PO tokens): keep them in memory.
            params["cachedir"] = False
        if o.proxy:
            params["proxy"] = o.proxy
        # The runtime is named with its path: yt-dlp alone looks only on PATH and in Python's scripts folder.
        params["js_runtimes"] = self._js_runtimes
        if self._extractor_args:
            params["extractor_args"] = self._extractor_args
        return params

    def clip_params(self, clip: Clip, folder: Path) -> dict:
        """The parameters that change per clip: output name, time range, ffmpeg arguments."""
        from yt_dlp.utils import download_range_func

        assert clip.start_s is not None and clip.end_s is not None
        range_start = max(0.0, clip.start_s - PREROLL_S)
        trim = ["-ss", f"{clip.start_s - range_start:.6f}"] if clip.start_s > range_start else []
        return {
            "outtmpl": {"default": str(folder / "clip.%(ext)s")},
            # types-yt-dlp wants chapter regexes and int times; yt-dlp reads `chapters or []` and float seconds
            "download_ranges": download_range_func(None, [(range_start, clip.end_s)]),  # type: ignore[arg-type, list-item]
            "external_downloader_args": {"ffmpeg_i": list(FFMPEG_INPUT_ARGS), "ffmpeg_o": trim + self._out_args},
        }

    def _ydl(self, url: str):
        # types-yt-dlp has no stub for this module (yt-dlp has it)
        from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor  # type: ignore[import-not-found]

        if self._extractor is None:
            from yt_dlp.extractor import gen_extractor_classes

            with self._opened_lock:  # the first match in yt-dlp's own order, as YoutubeDL would pick
                if self._extractor is None:
                    load_plugins(self.options.plugin_dirs)  # a plugin's extractor may be the one that matches
                    self._extractor = next(ie for ie in gen_extractor_classes() if ie.suitable(url))
        if getattr(self._local, "ydl", None) is None:
            # yt-dlp decides whether ffmpeg can cut a time range from PATH alone, ignoring
            # `ffmpeg_location` (a FIXME in FFmpegFD.available); its own CLI sets this context variable
            # instead. Without it a pip-only install (imageio-ffmpeg, no ffmpeg on PATH) could not cut.
            location = getattr(FFmpegPostProcessor, "_ffmpeg_location", None)
            if location is not None:
                location.set(self.ffmpeg)
            self._local.logger = _Logger()
            self._local.ydl = _youtube_dl_class()(self._base_params(self._local.logger), auto_init=False)
            self._local.ydl.add_info_extractor(self._extractor)
            with self._opened_lock:
                self._opened.append(self._local.ydl)
        return self._local.ydl, self._local.logger

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for ydl in opened:
            # Without a cookie file to save to, close() leaves the user's cookies file as it was.
            ydl.params.pop("cookiefile", None)
            ydl.close()

    def _match_filter(self, info: dict, *, incomplete: bool = False) -> str | None:
        """yt-dlp's last look before downloading: keep the info; refuse a window past the source's end.

        YouTube states every video's length, so a cut starting after it is known without a download.
        """
        self._local.info = info
        clip = getattr(self._local, "clip", None)
        duration = info.get("duration")
        if (clip is not None and not incomplete and isinstance(duration, (int, float)) and duration > 0
                and clip.start_s >= float(duration) + (1.0 if float(duration).is_integer() else 0.0)):
            self._local.past_end = float(duration)
            return f"{clip.key} starts past the end of its {duration} s source"
        return None

    def download(self, clip: Clip, folder: Path) -> tuple[Path, dict]:
        """Download ``clip`` into ``folder``; returns the audio file and yt-dlp's info dict."""
        import yt_dlp

        url = self.options.url(clip.ytid)
        ydl, logger = self._ydl(url)
        extractor = self._extractor
        assert extractor is not None  # _ydl picked it
        logger.errors.clear()
        ydl.params.update(self.clip_params(clip, folder))
        self._local.clip, self._local.info, self._local.past_end = clip, {}, None
        try:
            info = ydl.extract_info(url, download=True, ie_key=extractor.ie_key()) or {}
        except yt_dlp.utils.DownloadError as err:
            message = _clean_message(str(err) or "; ".join(logger.errors))
            status, reason = journal.classify(message, _http_status(err))
            raise ClipFailure(status, reason, message, info=self._local.info) from err
        if self._local.past_end is not None:
            raise ClipFailure(PERMANENT, "beyond_source_end",
                              f"clip starts at {clip.start_s:.3f} s, the source is {self._local.past_end:.3f} s long")
        made = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
        made = [p for p in made if p.is_file() and p.parent == folder]
        if len(made) != 1:
            found = sorted(p.name for p in folder.iterdir())
            raise ClipFailure(TRANSIENT, "no_output", f"yt-dlp reported success but wrote {found or 'nothing'}",
                              info=info)
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
        duration = header_duration(proc.stderr)
        return (None, 0.0) if duration is None else (duration, 0.05)


#: yt-dlp options that print something about each video.
_PRINT_PARAMS = ("forceprint", "print_to_file", "forcejson", "dump_single_json", "forcetitle", "forceid", "forceurl",
                 "forcethumbnail", "forcedescription", "forcefilename", "forceduration", "forceformat")


def load_plugins(folders: Sequence[str | os.PathLike] = ()) -> None:
    """Load yt-dlp's plugins from its default places and ``folders`` (yt-dlp's ``--plugin-dirs``).

    yt-dlp keeps the plugin folders in a process-wide setting and loads plugins once, when the first
    ``YoutubeDL`` is made; its Python API has no parameter for them. A PO-token provider (e.g.
    ``bgutil-ytdlp-pot-provider``) is such a plugin: pip-installed ones are found in the default places,
    others in the folders given here. Loading again is skipped unless the folders changed.
    """
    import importlib

    from yt_dlp.globals import all_plugins_loaded, plugin_dirs
    from yt_dlp.plugins import load_all_plugins

    wanted = ["default", *(os.path.abspath(os.path.expanduser(f)) for f in folders)]
    if all_plugins_loaded.value and plugin_dirs.value == wanted:
        return
    if plugin_dirs.value != wanted:
        plugin_dirs.value = wanted
        importlib.invalidate_caches()  # yt-dlp's finder forgets the plugin packages found in the old folders
    load_all_plugins()


@functools.cache
def _youtube_dl_class() -> type:
    """``YoutubeDL`` without the ``--print`` tables it renders when nothing is to be printed.

    At each of its seven processing steps yt-dlp renders the format, thumbnail and subtitle tables and
    expands the output template for ``--print`` templates, whether any is set or not: about 15 ms of
    CPU per clip, a tenth of the whole fetch. With nothing to print, the step is skipped.
    """
    import yt_dlp

    class YoutubeDL(yt_dlp.YoutubeDL):
        def _forceprint(self, key: str, info_dict: dict | None) -> dict | None:
            if any(self.params.get(name) for name in _PRINT_PARAMS):
                # types-yt-dlp leaves out YoutubeDL's private _forceprint, which yt-dlp has
                return super()._forceprint(key, info_dict)  # type: ignore[misc]
            return None if info_dict is None else dict(info_dict)

    return YoutubeDL


def _clean_message(message: str) -> str:
    message = re.sub(r"\x1b\[[0-9;]*m", "", message).strip()
    return message[len("ERROR: "):] if message.startswith("ERROR: ") else message
