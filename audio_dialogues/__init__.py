"""Audio Dialogues (arXiv 2404.07616) as a typed `datasets` builder, with audio fetching and evaluation.

``import audio_dialogues`` makes ``datasets.load_dataset("audio_dialogues", config, ...)`` find the
builder; :func:`load` does the same without relying on that hook.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .load_hook import install as _install_load_hook  # noqa: E402
from .loading import load, sample_paths  # noqa: E402

LOAD_DATASET_HOOKED = _install_load_hook()

__all__ = ["load", "sample_paths", "LOAD_DATASET_HOOKED", "__version__"]
