"""Publishing a version to the Hugging Face Hub (or a local folder) and reading published versions back.

:func:`push` builds the repo folder (:mod:`.repo_folder`: parquet shards, the card of :mod:`.card` with
the figures of :mod:`.plots` and the figures of :mod:`.stats`) and uploads it in one commit
(:mod:`.hub`). The other direction, a published repo as the builder's annotation source, is
:mod:`audio_dialogues.sources.published`. Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "push": ".hub",
    "PushResult": ".hub",
    "build_repo_folder": ".repo_folder",
    "FolderReport": ".repo_folder",
    "PublishError": ".errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
