"""Finding the ffmpeg binary that cuts clips (and decodes what libsndfile cannot)."""

from __future__ import annotations

import os
import shutil

from .options import FetchError


def find_ffmpeg(explicit: str | None = None) -> str:
    """The ffmpeg to use: ``explicit``, else ``ffmpeg`` on PATH, else the binary imageio-ffmpeg ships."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise FetchError(f"ffmpeg {explicit!r} is not an executable file")
        return explicit
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise FetchError(
            "ffmpeg not found: install it (e.g. `apt install ffmpeg`, `brew install ffmpeg`) or "
            "`pip install imageio-ffmpeg`, which ships a binary"
        ) from err
