"""How to fetch: :class:`FetchOptions`, checked when made, and :class:`FetchError` for runs that cannot start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..audio import cache as clip_cache
from ..audio.headers import WINDOW_TOLERANCE_S
from ..checks import BOOL, OneOf, Rule, Spec, check_options
from ..errors import AudioDialoguesError, UsageError
from ..numbers import MAX_SECONDS, POSITIVE_SECONDS, SECONDS, Number

if TYPE_CHECKING:
    from .report import FetchReport

YOUTUBE_URL_TEMPLATE = "https://www.youtube.com/watch?v={ytid}"
#: The highest output sample rate (the builder's ``sampling_rate`` takes the same).
MAX_SAMPLE_RATE = 768_000


class FetchError(UsageError, RuntimeError):
    """The fetcher cannot run at all (no ffmpeg, bad options): a usage error.

    A :class:`ValueError` (as :class:`UsageError`), since bad :class:`FetchOptions` raised ``ValueError`` before.
    """


class FetchStopped(AudioDialoguesError, RuntimeError):
    """The run stopped early for a reason that is no clip's fault; nothing was recorded against any clip.

    ``report`` holds what was done before the stop (set by :func:`~audio_dialogues.fetch.fetch_clips`).
    """

    report: FetchReport | None = None


class CacheError(FetchStopped):
    """The clip cache cannot be written: a file where its folder should be, read-only, full."""


class NetworkUnreachable(FetchStopped):
    """The video host cannot be reached at all (no route, DNS failing, connection refused)."""


@dataclass
class FetchOptions:
    """How to fetch. Defaults suit YouTube: FLAC, mono, 16 kHz, 4 workers, 3 attempts per run."""

    #: URL of a video; ``{ytid}`` is replaced by the YouTube id. Tests point this at 127.0.0.1.
    url_template: str = YOUTUBE_URL_TEMPLATE
    #: Output sample rate in Hz; ``None`` keeps the source's rate.
    sample_rate: int | None = 16000
    #: Output channels; ``None`` keeps the source's.
    channels: int | None = 1
    format: str = "flac"
    workers: int = 4
    #: Seconds each worker waits before each download (be gentle with YouTube).
    sleep: float = 0.0
    #: At most this many downloads start per second, all workers together (``None``: no limit).
    rate_limit: float | None = None
    #: A Netscape cookies file (for age-restricted videos and bot checks), passed to yt-dlp.
    cookies: str | Path | None = None
    proxy: str | None = None
    #: Also retry clips the journal records as permanently unavailable.
    retry_failed: bool = False
    #: Downloads tried per clip and run before a transient failure is left for the next run.
    max_attempts: int = 3
    #: First backoff after a transient failure; doubled per attempt, times a random factor in [0.5, 1.5).
    backoff_s: float = 2.0
    backoff_max_s: float = 120.0
    #: Accepted difference between the decoded and the requested duration.
    tolerance_s: float = WINDOW_TOLERANCE_S
    socket_timeout_s: float = 30.0
    #: Split the clips by video into this many disjoint shards and fetch only ``shard_index``.
    num_shards: int = 1
    shard_index: int = 0
    #: The ffmpeg binary; ``None`` finds one (PATH, then the one imageio-ffmpeg ships).
    ffmpeg: str | None = None
    #: Decode every cached clip again instead of trusting its verification record (slow, paranoid).
    reverify: bool = False
    #: JavaScript runtimes for YouTube's challenges, ``NAME[:PATH]`` each (yt-dlp's ``--js-runtimes``);
    #: empty: deno on PATH, else the one the ``deno`` package ships (see :mod:`.jsruntime`).
    js_runtimes: tuple[str, ...] = ()
    #: yt-dlp extractor arguments, ``IE_KEY:ARGS`` each, exactly as yt-dlp's ``--extractor-args``
    #: (e.g. ``youtube:player_client=web;po_token=web.gvs+TOKEN``).
    extractor_args: tuple[str, ...] = ()
    #: Extra folders yt-dlp searches for plugins, besides its default places (yt-dlp's ``--plugin-dirs``):
    #: each holds plugin packages (``NAME/yt_dlp_plugins/...`` folders, or their .zip/.whl files), e.g. a
    #: PO-token provider that is not pip-installed.
    plugin_dirs: tuple[str | Path, ...] = ()

    def __post_init__(self) -> None:
        check_options(vars(self), SPECS, FetchError, optional=_NONE_ALLOWED)
        if not self.shard_index < self.num_shards:
            raise FetchError(f"shard_index must be less than num_shards ({self.num_shards}), got {self.shard_index}")
        if self.js_runtimes:
            from .jsruntime import parse_runtime

            for runtime in self.js_runtimes:
                parse_runtime(runtime)
        self.extractor_args_dict()  # raises FetchError on yt-dlp's own terms
        for folder in self.plugin_dirs:
            if not os.path.isdir(os.path.expanduser(folder)):
                raise FetchError(f"plugin folder {folder}: not a folder")

    def extractor_args_dict(self) -> dict[str, dict[str, list[str]]]:
        """yt-dlp's ``extractor_args`` parameter, parsed by yt-dlp's own command-line parser."""
        if not self.extractor_args:
            return {}
        import optparse

        from yt_dlp.options import create_parser

        argv = [arg for spec in self.extractor_args for arg in ("--extractor-args", spec)]
        try:
            opts, _ = create_parser().parse_args(argv)
        except optparse.OptParseError as err:
            raise FetchError(str(err).strip().splitlines()[-1].split("error: ", 1)[-1]) from err
        return opts.extractor_args

    def url(self, ytid: str) -> str:
        return self.url_template.format(ytid=ytid)

    def satisfied_by(self, record: clip_cache.ClipRecord) -> bool:
        """Whether a cached clip is what these options would fetch (else it is fetched again)."""
        return (
            record.format == self.format
            and record.requested_sample_rate == self.sample_rate
            and (self.channels is None or record.channels == self.channels)
        )


#: The numeric fields of :class:`FetchOptions` and the values each takes (the command line parses its options
#: with the same specs).
NUMBERS: dict[str, Number] = {
    "sample_rate": Number(1, MAX_SAMPLE_RATE, whole=True, none="the source's rate", keyword="native"),
    "channels": Number(1, 64, whole=True, none="the source's channels"),
    "workers": Number(1, 1000, whole=True),
    "sleep": SECONDS,
    # at least one start per day: 1 / rate is waited for
    "rate_limit": Number(1 / MAX_SECONDS, 1e6, none="no limit"),
    "max_attempts": Number(1, 1000, whole=True),
    "backoff_s": SECONDS,
    "backoff_max_s": SECONDS,
    "tolerance_s": Number(0, 60),
    "socket_timeout_s": POSITIVE_SECONDS,
    "num_shards": Number(1, 100_000, whole=True),
    "shard_index": Number(0, 99_999, whole=True),
}


def _url_template(value: object) -> bool:
    """An http(s) URL with ``{ytid}`` and no other placeholder (yt-dlp refuses file://, reads others as searches)."""
    if not isinstance(value, str) or "{ytid}" not in value:
        return False
    try:
        url = urlsplit(value.format(ytid="x" * 11))
    except (KeyError, IndexError, ValueError):
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


def _proxy(value: object) -> bool:
    return isinstance(value, str) and bool(urlsplit(value).scheme) and bool(urlsplit(value).hostname)


def _path(value: object) -> bool:
    return isinstance(value, os.PathLike) or (isinstance(value, str) and bool(value.strip()))


#: Every field of :class:`FetchOptions` and what it takes (the numbers as :data:`NUMBERS` says).
SPECS: dict[str, Spec] = {
    **NUMBERS,
    "url_template": Rule(_url_template, "an http:// or https:// URL containing {ytid} and no other placeholder"),
    "format": OneOf(clip_cache.CACHE_AUDIO_FORMATS),
    "cookies": Rule(_path, "the path of a Netscape cookies file"),
    "proxy": Rule(_proxy, "a URL such as http://HOST:PORT or socks5://HOST:PORT"),
    "retry_failed": BOOL,
    "ffmpeg": Rule(_path, "the path of an ffmpeg binary"),
    "reverify": BOOL,
}
#: Fields whose ``None`` means "not given" (the numbers say so themselves).
_NONE_ALLOWED = frozenset({"cookies", "proxy", "ffmpeg"})
