"""Make ``datasets.load_dataset("audio_dialogues", ...)`` resolve to this package's builder.

datasets >= 4 no longer runs loading scripts, but it still builds from builder classes. Every
``load_dataset``/``load_dataset_builder`` call asks ``datasets.load.dataset_module_factory`` which module
holds the builder; wrapping that function for the one name ``audio_dialogues`` (and passing every other
name through untouched) points it at :mod:`audio_dialogues.dataset.builder`. The hook is guarded: if a datasets
release changes that function's shape, importing this package still works, a warning says so, and
:func:`audio_dialogues.load` remains the way in.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

DATASET_NAME = "audio_dialogues"
BUILDER_MODULE = "audio_dialogues.dataset.builder"
_MARK = "_audio_dialogues_hook"


def install() -> bool:
    """Wrap ``datasets.load.dataset_module_factory``; True when ``load_dataset`` now finds our builder."""
    try:
        from datasets import load as datasets_load

        original = datasets_load.dataset_module_factory
        module_cls = datasets_load.DatasetModule
        params = inspect.signature(original).parameters
        fields = inspect.signature(module_cls).parameters
        if next(iter(params)) != "path" or not {"module_path", "hash", "builder_kwargs"} <= set(fields):
            raise TypeError(f"unexpected dataset_module_factory{tuple(params)} / DatasetModule{tuple(fields)}")
    except (ImportError, AttributeError, TypeError, StopIteration) as e:
        warnings.warn(
            f"audio_dialogues could not register with datasets.load_dataset ({e}); "
            "use audio_dialogues.load(...) instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    if getattr(original, _MARK, False):
        return True

    @functools.wraps(original)
    def dataset_module_factory(path: str, *args: Any, **kwargs: Any) -> Any:
        if path != DATASET_NAME:
            return original(path, *args, **kwargs)
        from .builder import builder_hash

        names = {"dataset_name": DATASET_NAME}
        return module_cls(module_path=BUILDER_MODULE, hash=builder_hash(), builder_kwargs=names)

    setattr(dataset_module_factory, _MARK, True)
    datasets_load.dataset_module_factory = dataset_module_factory
    return True
