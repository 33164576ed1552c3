"""Audio Dialogues (arXiv 2404.07616) as a typed `datasets` builder, with audio fetching and evaluation.

``import audio_dialogues`` makes ``datasets.load_dataset("audio_dialogues", config, ...)`` find the
builder; :func:`load` does the same without relying on that hook. :func:`evaluate` scores model answers
as the paper does; :func:`export_chat` writes the chat formats of the models trained on this data.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .chat_export import export_chat  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .load_hook import install as _install_load_hook  # noqa: E402
from .loading import load, sample_paths  # noqa: E402

LOAD_DATASET_HOOKED = _install_load_hook()

__all__ = ["load", "sample_paths", "evaluate", "export_chat", "LOAD_DATASET_HOOKED", "__version__"]
