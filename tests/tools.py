"""Optional tools of the test suite (java, torch, torchcodec, ffmpeg): skip without them, fail in CI.

A developer without Java still runs the rest of the suite; CI (``CI`` set, as .ci/run and every CI
service set it) promises that every tool is installed, so there a missing tool is a failure, never a
silent skip that would make the run claim more than it checked.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
from types import ModuleType

import pytest

IN_CI = bool(os.environ.get("CI"))


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason}; CI is set, so every tool the tests use must be installed (see .ci/run)")
    pytest.skip(reason)


def require_tool(name: str, why: str = "") -> str:
    """The path of executable ``name``; skips the test without it (fails it when ``CI`` is set)."""
    path = shutil.which(name)
    if path is None:
        _missing(f"no '{name}' on PATH" + (f" ({why})" if why else ""))
    return path


def require_module(name: str, why: str = "") -> ModuleType:
    """Module ``name``, imported; skips the test without it (fails it when ``CI`` is set)."""
    if importlib.util.find_spec(name) is None:
        _missing(f"no Python module '{name}'" + (f" ({why})" if why else ""))
    return importlib.import_module(name)


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rmn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


#: For tests that make a fault real with a user namespace (read-only or tiny mounts); under CI they must run.
needs_unshare = pytest.mark.skipif(not _unshare_works() and not IN_CI,
                                   reason="user namespaces (unshare -r) are not permitted here")


def permissions_bind() -> list[str]:
    """A command prefix under which file permissions apply to the command, even when the tests run as root.

    Root reads and writes anything (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH); ``setpriv`` drops both from the
    command's capability bounding set. Skips without ``setpriv`` (fails in CI).
    """
    if os.geteuid() != 0:
        return []
    return [require_tool("setpriv", "to make permissions apply to root"), "--bounding-set",
            "-dac_override,-dac_read_search"]
