"""Checking the builder's options: every value's type and range, before anything uses it.

A wrong option (``num_shards="8"``, ``sampling_rate=True``, a misspelt name) is met here as a
:class:`ConfigError` naming the option and what it takes, not as a traceback from deep inside the
builder or ``datasets``. The module loads no heavy library, so the CLI can catch the error cheaply.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from .. import checks
from ..audio.resolver import MISSING_AUDIO_POLICIES
from ..checks import BOOL, OneOf, Rule, Spec
from ..errors import ConfigError
from ..fetch.options import MAX_SAMPLE_RATE
from ..numbers import Number

#: Numeric options: beyond these bounds a value is a typo, not a setting.
SAMPLING_RATE = Number(1, MAX_SAMPLE_RATE, whole=True)
SHARDS = Number(1, 100_000, whole=True)
#: Options for which ``None`` means "not given" (datasets itself drops overrides whose value is None).
_NONE_ALLOWED = {"data_dir", "audio_dir", "audio_cache_dir", "sampling_rate", "strong_labels", "musiccaps_csv",
                 "ontology", "repo_id", "revision"}


def is_path(value: Any) -> bool:
    return isinstance(value, os.PathLike) or (isinstance(value, str) and bool(value.strip()))


def is_paths(value: Any) -> bool:
    """One path (or URL), or a list of them."""
    if isinstance(value, (list, tuple)):
        return all(is_path(v) for v in value)
    return is_path(value)


def _fetch_options(value: Any) -> bool:
    """A dict that :class:`FetchOptions` accepts; its own message (field, value, what it takes) names a bad value."""
    if not isinstance(value, dict):
        return False
    from ..fetch import FetchOptions

    known = [f.name for f in dataclasses.fields(FetchOptions)]
    unknown = [k for k in value if k not in known]
    if unknown:
        raise ConfigError(f"option fetch_options: unknown keys {unknown}; known: {', '.join(sorted(known))}")
    try:
        FetchOptions(**value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"option fetch_options: {e}") from None
    return True


@functools.cache
def _specs() -> dict[str, Spec]:
    """Option -> what it takes; built on first use (decoder names need the decoders)."""
    from .decoding import DECODERS

    return {
        "data_dir": Rule(is_path, "a folder path"),
        "audio_dir": Rule(is_paths, "a folder path or a list of folder paths"),
        "audio_cache_dir": Rule(is_path, "a folder path"),
        "sampling_rate": Rule(lambda v: v == "native" or SAMPLING_RATE.accepts(v),
                              f"a whole number of Hz from 1 to {MAX_SAMPLE_RATE}, or 'native' (or None) for each "
                              "file's own rate"),
        "decoder": OneOf(DECODERS),
        "missing_audio": OneOf(MISSING_AUDIO_POLICIES),
        "strong_labels": Rule(is_paths, "a path or URL of a strong-label TSV, or a list of them"),
        "musiccaps_csv": Rule(is_paths, "a path or URL of the MusicCaps CSV"),
        "ontology": Rule(is_paths, "a path or URL of the AudioSet ontology JSON or of the strong-label release's "
                                   "mid_to_display_name.tsv, or a list of them"),
        "download_metadata": BOOL,
        "download_audio": BOOL,
        "fetch_options": Rule(_fetch_options, "a dict of FetchOptions fields"),
        "num_shards": SHARDS,
        "repo_id": Rule(lambda v: isinstance(v, str) and (
                            (len([p for p in v.split("/") if p]) == 2 and v.count("/") == 1) or os.path.isdir(v)),
                        "a Hub dataset repo id, 'namespace/name', or a folder written by `audio-dialogues push "
                        "--output-dir`"),
        "revision": Rule(lambda v: isinstance(v, str) and bool(v.strip()), "a branch, tag or commit of the repo"),
    }


def check_options(options: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the first option whose value is of the wrong type or out of range.

    Names this module does not know (the builder's own, or datasets') are left to their owners.
    """
    checks.check_options(options, _specs(), ConfigError, name=lambda key: f"option {key}", optional=_NONE_ALLOWED)
