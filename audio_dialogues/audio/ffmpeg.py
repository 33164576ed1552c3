"""Finding the ffmpeg binary that cuts clips (and decodes what libsndfile cannot), and reading what it says."""

from __future__ import annotations

import os
import re
import shutil

from ..errors import UsageError


class FfmpegNotFoundError(UsageError, RuntimeError):
    """No usable ffmpeg: the one given is not an executable file, or none is on PATH or in imageio-ffmpeg."""

#: Containers libsndfile cannot open: their length, windows and samples come from ffmpeg (local files, decoding).
FFMPEG_ONLY_EXTENSIONS = ("m4a", "webm", "mp4", "aac")
_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")


def header_duration(stderr: str) -> float | None:
    """Seconds ``ffmpeg -i`` reports from a container's header (``Duration: 00:01:02.50``); ``None``: not stated."""
    found = _DURATION_RE.search(stderr)
    return int(found[1]) * 3600 + int(found[2]) * 60 + float(found[3]) if found else None


def find_ffmpeg(explicit: str | None = None) -> str:
    """The ffmpeg to use: ``explicit``, else ``ffmpeg`` on PATH, else the binary imageio-ffmpeg ships."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise FfmpegNotFoundError(f"ffmpeg {explicit!r} is not an executable file")
        return explicit
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise FfmpegNotFoundError(
            "ffmpeg not found: install it (e.g. `apt install ffmpeg`, `brew install ffmpeg`) or "
            "`pip install imageio-ffmpeg`, which ships a binary"
        ) from err
