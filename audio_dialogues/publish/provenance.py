"""How a regenerated version was made, read from the generation report in its data folder.

``audio-dialogues generate`` writes ``generation_report.json`` beside the annotations it produces. The
card quotes the model, the prompt hash, each filter with how many dialogues it dropped, the seed and the
package version. The report is read defensively: a missing field is shown as unknown, an unreadable or
oddly shaped report becomes a note in the card, never a failed push.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import load_json
from ..sources.annotations import GENERATION_REPORT


@dataclass
class Provenance:
    """The facts the card states about a regenerated version; ``problem`` says why a report was unusable."""

    source: str
    model: str | None = None
    prompt_hash: str | None = None
    seed: str | None = None
    package_version: str | None = None
    #: ``(filter name, dialogues dropped)`` in report order.
    filters: list[tuple[str, str]] = field(default_factory=list)
    #: Per config, ``(what, how many)`` pairs such as requested / kept.
    counts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    problem: str | None = None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _first(report: dict, *keys: str) -> Any:
    for key in keys:
        if key in report and report[key] not in (None, ""):
            return report[key]
    return None


def _settings(report: dict) -> list[dict]:
    """Where a field may be: ``settings.model_settings``, ``settings``, then the report itself."""
    settings = report.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    model_settings = settings.get("model_settings")
    model_settings = model_settings if isinstance(model_settings, dict) else {}
    return [model_settings, settings, report]


def _lookup(report: dict, *keys: str) -> Any:
    for place in _settings(report):
        value = _first(place, *keys)
        if value is not None:
            return value
    return None


def _model(report: dict) -> str | None:
    model = _lookup(report, "model", "llm", "model_name")
    if isinstance(model, dict):
        model = _first(model, "name", "model", "id")
    return _text(model)


def _prompt_hash(report: dict) -> str | None:
    value = _lookup(report, "prompt_hashes", "prompt_hash", "prompt_sha256", "prompts_sha256", "prompt_digest")
    if isinstance(value, dict):  # one hash per config
        return ", ".join(f"{k}: {v}" for k, v in value.items() if _text(v))
    if value is None and isinstance(report.get("prompt"), dict):
        return _text(_first(report["prompt"], "hash", "sha256", "digest"))
    return _text(value)


#: ``generate``'s stages, in order, and what dropped the dialogues lost between one and the next.
_STAGE_FILTERS = (("answered", "parsed", "answers that did not parse into turns"),
                  ("parsed", "phrases", "low-confidence phrases"),
                  ("phrases", "similarity", "similarity threshold"),
                  ("similarity", "duplicates", "exact duplicates"),
                  ("duplicates", "near_duplicates", "near-duplicates"))


def _stage_filters(report: dict) -> list[tuple[str, str]]:
    """Drop counts from ``splits.<config>_<split>.stages`` (dialogues left after each stage), summed."""
    splits = report.get("splits")
    if not isinstance(splits, dict):
        return []
    dropped: dict[str, int] = {}
    for split in splits.values():
        stages = split.get("stages") if isinstance(split, dict) else None
        if not isinstance(stages, dict):
            continue
        for before, after, name in _STAGE_FILTERS:
            if isinstance(stages.get(before), int) and isinstance(stages.get(after), int):
                dropped[name] = dropped.get(name, 0) + stages[before] - stages[after]
    threshold = _lookup(report, "similarity_threshold")
    embedder = _lookup(report, "embedder")
    label = {"similarity threshold": f"similarity threshold {threshold} ({embedder})"} if threshold is not None else {}
    if _lookup(report, "similarity_test") == "relative":  # generate's default since the relative test
        margin = _lookup(report, "similarity_margin")
        label = {"similarity threshold": f"similarity, relative test, margin {margin} ({embedder})"}
    return [(label.get(name, name), str(n)) for name, n in dropped.items()]


def _filters(report: dict) -> list[tuple[str, str]]:
    """Filters as a mapping ``name -> count`` or ``name -> {dropped: n, ...}``, a list of such objects, or
    ``generate``'s per-split stage counts."""
    raw = _first(report, "filters", "filter_drops", "dropped")
    if raw is None:
        return _stage_filters(report)
    out: list[tuple[str, str]] = []
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(_text(_first(f, "name", "filter")) or f"filter {i + 1}", f) for i, f in enumerate(raw)
                 if isinstance(f, dict)]
    else:
        return out
    for name, value in items:
        if isinstance(value, dict):
            value = _first(value, "dropped", "drops", "removed", "count")
        out.append((str(name), _text(value) or "unknown"))
    return out


def _counts(report: dict) -> dict[str, list[tuple[str, str]]]:
    configs = report.get("configs")
    out: dict[str, list[tuple[str, str]]] = {}
    splits = report.get("splits")
    if not isinstance(configs, dict) and isinstance(splits, dict):  # generate: items built and dialogues written
        for name, split in sorted(splits.items()):
            stages = split.get("stages") if isinstance(split, dict) else None
            if isinstance(stages, dict) and stages.get("items") is not None:
                out[str(name)] = [("items", _text(stages.get("items")) or "unknown"),
                                  ("written", _text(stages.get("near_duplicates", stages.get("duplicates")))
                                   or "unknown")]
        return out
    if not isinstance(configs, dict):
        return out
    for config, value in configs.items():
        if isinstance(value, dict):
            pairs = [(str(k), text) for k, v in value.items() if (text := _text(v)) is not None]
            if pairs:
                out[str(config)] = pairs
    return out


def read_provenance(data_dir: str | Path) -> Provenance | None:
    """The provenance in ``data_dir/generation_report.json``; None when there is no report."""
    path = Path(data_dir) / GENERATION_REPORT
    if not path.is_file():
        return None
    try:
        report = load_json(path)
    except ValueError as e:  # unreadable, not UTF-8, malformed, nested too deep, a number too long to convert
        return Provenance(source=path.name, problem=f"{path.name} could not be read ({e})")
    if not isinstance(report, dict):
        return Provenance(source=path.name, problem=f"{path.name} is not a JSON object")
    return Provenance(
        source=path.name,
        model=_model(report),
        prompt_hash=_prompt_hash(report),
        seed=_text(_lookup(report, "seed", "random_seed")),
        package_version=_text(_lookup(report, "package_version", "audio_dialogues_version", "version")),
        filters=_filters(report),
        counts=_counts(report),
    )
