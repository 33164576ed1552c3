"""Audio Dialogues (arXiv 2404.07616) as a typed `datasets` builder, with audio fetching and evaluation.

``import audio_dialogues`` makes ``datasets.load_dataset("audio_dialogues", config, ...)`` find the
builder (without importing ``datasets`` itself: the name is registered when ``datasets`` is first
imported); :func:`load` does the same without relying on that hook. :func:`evaluate` scores model answers
as the paper does; :func:`export_chat` writes the chat formats of the models trained on this data;
:func:`fetch_clips` fills the clip cache; :func:`predict` runs an audio chat model over a test split, turn by
turn, writing the predictions :func:`evaluate` reads.

The package is layered, each layer importing only those below it (``.importlinter``, checked by
``lint-imports``): :mod:`.sources` (clips, annotations, metadata, published repos) -> :mod:`.audio` (the clip
cache, local audio files) -> :mod:`.fetch` (downloading) -> :mod:`.dataset` (the builder) ->
:mod:`.evaluation` / :mod:`.export` / :mod:`.generate` / :mod:`.publish` -> :mod:`.cli`. The public names
below are imported on first use, so that importing the package (and every CLI command) starts fast.
Every error the package raises on purpose is an :class:`AudioDialoguesError` (see :mod:`.errors`).
"""

from __future__ import annotations

import importlib
from typing import Any

from .dataset import registration as _registration
from .version import __version__

#: public name -> the module that defines it
_PUBLIC = {
    "load": ".dataset.api",
    "sample_paths": ".sample",
    "evaluate": ".evaluation.scoring",
    "export_chat": ".export.chat_formats",
    "predict": ".evaluation.predict",
    "PredictOptions": ".evaluation.predict",
    "fetch_clips": ".fetch",
    "AudioDialoguesError": ".errors",
    "UsageError": ".errors",
}

_registration.install()


def __getattr__(name: str) -> Any:
    if name == "LOAD_DATASET_HOOKED":  # whether load_dataset finds the builder; answering imports datasets
        importlib.import_module(_registration.TARGET_MODULE)
        return bool(_registration.hooked)
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_PUBLIC, "LOAD_DATASET_HOOKED", "__version__"]
