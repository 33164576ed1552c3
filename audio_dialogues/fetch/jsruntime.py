"""The JavaScript runtime yt-dlp needs for YouTube, found and handed to it explicitly.

Since yt-dlp 2025.11.12 YouTube's player challenges (the ``n`` and signature parameters of each media
URL) are solved by running yt-dlp's EJS scripts in an external JavaScript runtime. Without one, yt-dlp
warns "No supported JavaScript runtime could be found" and most audio formats are missing, so clips
fail with "Requested format is not available". yt-dlp looks for the runtime in the Python scripts folder
and on PATH only; the package depends on ``deno`` (its binary on the package index), whose location
:func:`bundled_deno` asks the ``deno`` package for and passes as yt-dlp's ``js_runtimes`` option, so a
``pip install`` works whatever PATH says (``pip install --target``, ``--user``, an unactivated venv).

A user's own runtime wins: ``--js-runtime NAME[:PATH]`` (repeatable; NAME alone is looked up on PATH),
else a ``deno`` on PATH, else the bundled one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from .options import FetchError

#: yt-dlp's runtime names, in its order of preference (deno, node, quickjs, bun).
RUNTIMES = ("deno", "node", "quickjs", "bun")


@dataclass(frozen=True)
class RuntimeInfo:
    """A runtime as yt-dlp sees it: its version and whether yt-dlp supports that version."""

    name: str
    path: str
    version: str
    supported: bool


def parse_runtime(spec: str) -> tuple[str, str | None]:
    """``NAME[:PATH]`` (yt-dlp's ``--js-runtimes`` syntax) -> (name, path or ``None``); FetchError if unknown."""
    name, _, path = spec.partition(":")
    name = name.strip().lower()
    if name not in RUNTIMES:
        raise FetchError(f"--js-runtime {spec!r}: unknown runtime {name!r} (one of {', '.join(RUNTIMES)})")
    return name, os.path.expanduser(path) if path else None


def bundled_deno() -> str | None:
    """The deno binary of the ``deno`` package (a dependency), or ``None`` if it is not installed."""
    try:
        import deno
    except ImportError:
        return None
    try:
        return deno.find_deno_bin()
    except (FileNotFoundError, OSError):
        return None


def js_runtimes(specs: Sequence[str] = ()) -> dict[str, dict[str, str | None]]:
    """yt-dlp's ``js_runtimes`` option: the user's runtimes if given, else deno on PATH or the bundled one."""
    if specs:
        return {name: {"path": path} for name, path in map(parse_runtime, specs)}
    return {"deno": {"path": shutil.which("deno") or bundled_deno()}}


def runtime_info(name: str, path: str | None) -> RuntimeInfo | None:
    """Ask the runtime for its version exactly as yt-dlp does (its own probe); ``None`` if it does not run."""
    import yt_dlp  # noqa: F401 - registers the runtimes
    from yt_dlp.globals import supported_js_runtimes

    # types-yt-dlp types the registry as a TypedDict of four names; it is a dict keyed by any registered name
    info = supported_js_runtimes.value[name](path=path).info  # type: ignore[literal-required]
    if info is None:
        return None
    return RuntimeInfo(info.name, info.path, info.version, bool(info.supported))


def usable_runtime(runtimes: dict[str, dict[str, str | None]]) -> tuple[RuntimeInfo | None, list[str]]:
    """The runtime yt-dlp will use (its first configured, running, supported one) and why others were not."""
    problems = []
    for name in RUNTIMES:
        if name not in runtimes:
            continue
        path = runtimes[name].get("path")
        info = runtime_info(name, path)
        if info is None:
            problems.append(f"{name} ({path or 'on PATH'}) does not run")
        elif not info.supported:
            problems.append(f"{info.name} {info.version} at {info.path} is too old for yt-dlp")
        else:
            return info, problems
    return None, problems
