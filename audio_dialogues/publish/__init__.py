"""Publishing a version to the Hugging Face Hub (or a local folder) and reading published versions back.

:func:`push` builds the repo folder (:mod:`.repo_folder`: parquet shards, the card of :mod:`.card` with
the figures of :mod:`.plots` and the figures of :mod:`.stats`) and uploads it in one commit
(:mod:`.hub`). :mod:`.source` is the other direction: a published repo as the builder's annotation
source.
"""

from __future__ import annotations

from .hub import PushResult, push
from .repo_folder import FolderReport, PublishError, build_repo_folder

__all__ = ["FolderReport", "PublishError", "PushResult", "build_repo_folder", "push"]
