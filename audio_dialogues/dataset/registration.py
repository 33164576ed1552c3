"""Make ``datasets.load_dataset("audio_dialogues", ...)`` resolve to this package's builder.

datasets >= 4 no longer runs loading scripts, but it still builds from builder classes. Every
``load_dataset``/``load_dataset_builder`` call asks ``datasets.load.dataset_module_factory`` which module
holds the builder; wrapping that function for the one name ``audio_dialogues`` (and passing every other
name through untouched) points it at :mod:`audio_dialogues.dataset.builder`.

Importing ``datasets`` takes seconds, so ``import audio_dialogues`` must not do it. :func:`install` wraps
the function at once when ``datasets.load`` is already imported; otherwise it puts a finder on
``sys.meta_path`` that wraps it the moment ``datasets.load`` has executed, before any caller can bind the
name (``from datasets.load import dataset_module_factory`` included). The wrap is guarded: if a datasets
release changes that function's shape, loading still works, a warning says so, and
:func:`audio_dialogues.load` remains the way in.

Without ``import audio_dialogues`` nothing runs, and datasets treats the name as a Hub repo id; the
message of that failure is datasets', so the README and :func:`audio_dialogues.load` are the fix. Offline,
datasets then lists the folders beside the prepared copies, one of which names the fix
(:data:`audio_dialogues.dataset.builder.IMPORT_HINT`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import types
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

DATASET_NAME = "audio_dialogues"
BUILDER_MODULE = "audio_dialogues.dataset.builder"
TARGET_MODULE = "datasets.load"
_MARK = "_audio_dialogues_hook"

#: None until ``datasets.load`` has been wrapped or refused; then whether ``load_dataset`` finds our builder.
hooked: bool | None = None


def _no_lock_beside_the_package() -> None:
    """Stop datasets < 4 from creating ``<site-packages>/audio_dialogues.lock`` whenever a builder is made.

    Its ``extend_dataset_builder_for_streaming`` locks the grandparent folder of the builder's file while it
    reads the file's relative imports: meant for a downloaded loading script in the datasets cache, it
    guards nothing in an installed package, and where site-packages is read-only (a container's system
    install) it made every load fail. Files of this package are not locked; every other file still is.
    """
    streaming: Any = sys.modules.get("datasets.streaming")  # datasets ships no types: its attributes are Any
    original = getattr(streaming, "lock_importable_file", None)
    if original is None or getattr(original, _MARK, False):
        return
    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep

    @functools.wraps(original)
    def lock_importable_file(importable_local_file: str) -> Any:
        if os.path.realpath(importable_local_file).startswith(package):
            return contextlib.nullcontext()
        return original(importable_local_file)

    setattr(lock_importable_file, _MARK, True)
    streaming.lock_importable_file = lock_importable_file


def wrap(datasets_load: Any) -> bool:
    """Wrap ``datasets_load.dataset_module_factory``; True when ``load_dataset`` now finds our builder."""
    global hooked
    import inspect

    _no_lock_beside_the_package()

    try:
        original = datasets_load.dataset_module_factory
        module_cls = datasets_load.DatasetModule
        params = inspect.signature(original).parameters
        fields = inspect.signature(module_cls).parameters
        if next(iter(params)) != "path" or not {"module_path", "hash", "builder_kwargs"} <= set(fields):
            raise TypeError(f"unexpected dataset_module_factory{tuple(params)} / DatasetModule{tuple(fields)}")
    except (AttributeError, TypeError, ValueError, StopIteration) as e:
        warnings.warn(
            f"audio_dialogues could not register with datasets.load_dataset ({e}); "
            "use audio_dialogues.load(...) instead",
            RuntimeWarning,
            stacklevel=2,
        )
        hooked = False
        return False
    if getattr(original, _MARK, False):
        hooked = True
        return True

    @functools.wraps(original)
    def dataset_module_factory(path: str, *args: Any, **kwargs: Any) -> Any:
        if path != DATASET_NAME:
            return original(path, *args, **kwargs)
        from .builder import builder_hash

        names = {"dataset_name": DATASET_NAME}
        if kwargs.get("revision") is not None:  # load_dataset(..., revision=): of the published repo_id
            names["revision"] = kwargs["revision"]
        return module_cls(module_path=BUILDER_MODULE, hash=builder_hash(), builder_kwargs=names)

    setattr(dataset_module_factory, _MARK, True)
    datasets_load.dataset_module_factory = dataset_module_factory
    hooked = True
    return True


# The two classes below follow importlib's finder/loader protocols without subclassing importlib.abc,
# whose import pulls in importlib.resources (tens of milliseconds at every start-up).


class _WrappingLoader:
    """Runs the real loader of ``datasets.load``, then :func:`wrap` on the fresh module."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        module.__loader__ = self._loader  # later reloads, get_source and friends see the real loader
        wrap(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PostImportFinder:
    """Finds ``datasets.load`` through the other finders and hands it to :class:`_WrappingLoader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
                  ) -> ModuleSpec | None:
        if fullname != TARGET_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = cast("Loader", _WrappingLoader(spec.loader))
                return spec
        return None


def install() -> None:
    """Register the name now if ``datasets.load`` is imported, else as soon as it is (without importing it)."""
    module = sys.modules.get(TARGET_MODULE)
    if module is not None:
        wrap(module)
    elif not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
