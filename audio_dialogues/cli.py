"""The audio-dialogues command line: a thin layer over the package's plain functions.

Every command parses its arguments, calls library functions and prints what they returned; no
logic lives here that a Python user could not reach through the library. Libraries that take
long to import are imported inside the command that needs them, so that help and ``status``
start at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .audio.cache import CACHE_AUDIO_FORMATS
from .audio.resolver import MISSING_AUDIO_POLICIES
from .dataset.overview import sample_gaps_note, summarise
from .errors import AudioDialoguesError, UsageError, exit_code
from .evaluation import TOKENIZERS
from .evaluation.options import AUDIO_INPUTS, HISTORIES, PREDICT_NUMBERS, PredictOptions
from .export import EXPORT_MISSING_AUDIO_POLICIES, FORMATS, OPENAI_AUDIO
from .files import input_problem
from .generate import generate
from .generate.options import add_arguments, from_args
from .llm.endpoint import NUMBERS as ENDPOINT_NUMBERS
from .llm.endpoint import add_arguments as add_endpoint_arguments
from .llm.endpoint import from_arguments as endpoint_arguments
from .sample import describe_sample, sample_paths
from .sources import records
from .sources.annotations import CONFIGS, SPLITS, Record

if TYPE_CHECKING:
    from .fetch import FetchOptions

DESCRIPTION = ("The Audio Dialogues dataset (arXiv 2404.07616): build it from annotation files and local audio, "
               "download its clips, score model answers and export chat formats. "
               "Run 'audio-dialogues demo' to see it work on the sample that ships with the package.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to an option's help, unless the help already says it or there is no default.

    No default: ``None``, an empty list (repeatable options) or a flag's ``False``. A default of ``0`` or
    ``0.0`` is a default and is shown (``0 in (False,)`` is true in Python, hence the identity checks).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings or not has_default(action):
            return text
        return text + " (default: %(default)s)"


def has_default(action: argparse.Action) -> bool:
    value = action.default
    return not (value is None or value is False or value is argparse.SUPPRESS or value == [])


class Parser(argparse.ArgumentParser):
    """An argument parser that shows defaults; every subcommand gets one too."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="audio-dialogues", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add in (_add_core_commands, _add_fetch_commands, _add_evaluation_commands, _add_generate_command,
                _add_publish_commands):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (AudioDialoguesError, KeyboardInterrupt) as e:
        # The message already names the file, the record or the option and the problem; no traceback.
        # The exit status is decided in one place, errors.EXIT_CODES.
        print("interrupted: run the same command again to resume" if isinstance(e, KeyboardInterrupt)
              else f"error: {e}", file=sys.stderr)
        return exit_code(e)


# --- shared: where annotations and their source metadata come from ------------------------------


def add_source_arguments(parser: argparse.ArgumentParser, *, split: bool = True, required: bool = True) -> None:
    """Options naming annotation files and the source metadata that completes release-shape records."""
    parser.add_argument("--data-dir", required=required, metavar="DIR",
                        help="the annotation folder: CONFIG_SPLIT.json or .jsonl files, or the authors' "
                             "dialogues_audioset_thresholded.json / dialogues_musiccaps_thresholded.json")
    if split:
        parser.add_argument("--split", default="test", choices=SPLITS, help="which split's dialogues")
    parser.add_argument("--strong-labels", action="append", metavar="TSV",
                        help="AudioSet strong-label TSV (path or URL); repeat for train and eval")
    parser.add_argument("--musiccaps-csv", metavar="CSV", help="MusicCaps metadata CSV (path or URL)")
    parser.add_argument("--ontology", action="append", metavar="FILE",
                        help="AudioSet ontology JSON or the strong-label release's mid_to_display_name.tsv (path or "
                             "URL), to name labels; repeat to give both")
    parser.add_argument("--download-metadata", action="store_true",
                        help="fetch missing metadata from its official URLs (cached)")


def source_kwargs(args: argparse.Namespace) -> dict:
    """The metadata options of :func:`add_source_arguments` as builder/library keyword arguments."""
    return {
        "strong_labels": args.strong_labels,
        "musiccaps_csv": args.musiccaps_csv,
        "ontology": args.ontology,
        "download_metadata": args.download_metadata,
    }


def read_records(args: argparse.Namespace, config: str, splits: Sequence[str] | None = None) -> list[Record]:
    """The records of ``splits`` (default ``args.split``; ``all``: every split with annotations), in one list."""
    by_split = records.records_by_split(config, splits or [args.split], data_dir=args.data_dir, **source_kwargs(args))
    return [record for split_records in by_split.values() for record in split_records]


def audio_folders(args: argparse.Namespace, config: str) -> list[str]:
    """:func:`~audio_dialogues.sources.records.audio_folders` of ``--audio-dir`` and ``--data-dir``."""
    return records.audio_folders(config, args.data_dir, args.audio_dir)


# --- core: demo, prepare ------------------------------------------------------------------------


def _add_core_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="build all three configs from the embedded sample and summarise them",
        description="Builds audioset, music and comparison from the small sample release that ships with the "
                    "package (a few dialogues per config, their clips and metadata rows; no network, no downloads) and "
                    "prints, per config, the split sizes, what was dropped and why, turns per dialogue and one "
                    "decoded example. A first check that the install works; the same calls load real data.")
    demo.add_argument("--cache-dir", metavar="DIR", help="datasets cache folder (default: the datasets default)")
    demo.set_defaults(run=_run_demo)

    prepare = commands.add_parser(
        "prepare", help="prepare a config from annotation files and local audio",
        description="Prepares every split of CONFIG into the datasets cache, as audio_dialogues.load does, and "
                    "reports the split sizes and what was dropped and why (no audio found, bad records).")
    prepare.add_argument("config", choices=CONFIGS, help="which subset")
    add_source_arguments(prepare, split=False)
    prepare.add_argument("--split", choices=(*SPLITS, "all"), default="all",
                         help="the split to report on; every split is prepared, and one where no dialogue has "
                              "audio is prepared empty, but naming it here is an error")
    prepare.add_argument("--audio-dir", action="append", default=[], metavar="DIR",
                         help="local audio folder, searched before the clip cache (repeatable)")
    prepare.add_argument("--audio-cache-dir", metavar="DIR", help="the clip cache (default: $AUDIO_DIALOGUES_CACHE, "
                                                                 "else $XDG_CACHE_HOME/audio_dialogues/clips)")
    prepare.add_argument("--missing-audio", choices=MISSING_AUDIO_POLICIES, default="drop",
                         help="a dialogue whose audio is not found: leave it out and count it, stop with an error, "
                              "or keep it with no audio")
    prepare.add_argument("--download-audio", action="store_true", help="fetch clips without local audio first")
    prepare.add_argument("--cache-dir", metavar="DIR", help="datasets cache folder (default: the datasets default)")
    prepare.set_defaults(run=_run_prepare)

    clean = commands.add_parser(
        "clean", help="delete prepared copies that newer ones superseded (changed inputs, audio or package code)",
        description="Deletes, from the datasets cache, the prepared copies nothing will load again: made by "
                    "another version of the package's code, or older than a copy with the same options. The "
                    "newest copy of each set of options, and copies being prepared, are kept.")
    clean.add_argument("--cache-dir", help="datasets cache folder (default: the datasets default)")
    clean.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    clean.set_defaults(run=_run_clean)


def _run_demo(args: argparse.Namespace) -> int:
    from .dataset.api import prepare

    print(describe_sample())
    for config in CONFIGS:
        datasets, report = prepare(config, cache_dir=args.cache_dir, **sample_paths())
        print(summarise(config, datasets, report, sample_gaps_note(report)))
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from .dataset.api import prepare

    datasets, report = prepare(
        args.config,
        None if args.split == "all" else args.split,
        data_dir=args.data_dir,
        audio_dir=args.audio_dir or None,
        audio_cache_dir=args.audio_cache_dir,
        missing_audio=args.missing_audio,
        download_audio=args.download_audio,
        cache_dir=args.cache_dir,
        **source_kwargs(args),
    )
    print(summarise(args.config, datasets, report))
    return 0


def _run_clean(args: argparse.Namespace) -> int:
    from .dataset.api import clean

    removed = clean(args.cache_dir, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for copy in removed:
        print(f"{verb} {copy.path} ({copy.size_bytes / 1e6:.1f} MB)")
    print(f"{verb} {len(removed)} superseded prepared copies, {sum(c.size_bytes for c in removed) / 1e6:.1f} MB")
    return 0


# --- fetch, status -------------------------------------------------------------------------------


def _add_fetch_commands(commands: argparse._SubParsersAction) -> None:
    from .fetch import YOUTUBE_URL_TEMPLATE

    fetch = commands.add_parser(
        "fetch", help="download the clips of a config into the clip cache (resumable, verified, journaled)",
        description="Exit status: 0 when every clip is cached or permanently unavailable, 1 when transient "
                    "failures remain (run again later) or the run had to stop (cache not writable, network "
                    "unreachable), 2 on usage errors. With --check (no CONFIG needed): 0 when everything "
                    "needed is there, 1 naming what is missing.")
    fetch.add_argument("config", nargs="?", choices=CONFIGS, help="which subset's clips (not needed with --check)")
    add_source_arguments(fetch, split=False, required=False)  # required unless --check; checked in _run_fetch
    fetch.add_argument("--split", choices=(*SPLITS, "all"), default="all",
                       help="which split's clips (default: every split that has annotations)")
    fetch.add_argument("--audio-dir", action="append", default=[], metavar="DIR",
                       help="local audio folder (repeatable): clips found there, as prepare finds them, are "
                            "not downloaded")
    fetch.add_argument("--audio-cache-dir", metavar="DIR", help="the clip cache (default: $AUDIO_DIALOGUES_CACHE, else "
                                                 "$XDG_CACHE_HOME/audio_dialogues/clips)")
    fetch.add_argument("--url-template", default=YOUTUBE_URL_TEMPLATE, help="video URL; {ytid} is replaced")
    fetch.add_argument("--workers", type=_fetch_number("workers"), default=4, help="parallel downloads (default 4)")
    fetch.add_argument("--sample-rate", type=_fetch_number("sample_rate"), default=16000,
                       help="output rate in Hz, or 'native' for the source's (default 16000)")
    fetch.add_argument("--format", choices=CACHE_AUDIO_FORMATS, default="flac", help="audio file format of the cache")
    fetch.add_argument("--retry-failed", action="store_true",
                       help="also retry clips the journal records as permanently unavailable")
    fetch.add_argument("--max-attempts", type=_fetch_number("max_attempts"), default=3,
                       help="downloads per clip and run before a transient failure waits for the next run")
    fetch.add_argument("--cookies", metavar="FILE", help="Netscape cookies file (age checks, bot checks)")
    fetch.add_argument("--proxy", metavar="URL", help="proxy URL for every request")
    fetch.add_argument("--sleep", type=_fetch_number("sleep"), default=0.0, metavar="S",
                       help="seconds each worker waits before each download")
    fetch.add_argument("--rate-limit", type=_fetch_number("rate_limit"), metavar="N",
                       help="start at most N downloads per second in total")
    fetch.add_argument("--num-shards", type=_fetch_number("num_shards"), metavar="N",
                       help="split the clips by video into N disjoint shards (one per machine) (default: the "
                            "SLURM array's task count in an array job, else 1)")
    fetch.add_argument("--shard-index", type=_fetch_number("shard_index"), metavar="I",
                       help="which shard this machine fetches (0-based) (default: the SLURM array task's "
                            "position in an array job, else 0)")
    fetch.add_argument("--reverify", action="store_true", help="decode every cached clip again (slow)")
    fetch.add_argument("--js-runtime", action="append", default=[], metavar="NAME[:PATH]",
                       help="JavaScript runtime for YouTube's challenges (deno, node, bun, quickjs; repeatable); "
                            "default: deno on PATH, else the one installed with the package")
    fetch.add_argument("--extractor-args", action="append", default=[], metavar="IE_KEY:ARGS",
                       help="yt-dlp extractor arguments, as yt-dlp's --extractor-args (repeatable), e.g. "
                            "'youtube:player_client=web;po_token=web.gvs+TOKEN'")
    fetch.add_argument("--plugin-dirs", action="append", default=[], metavar="DIR",
                       help="another folder yt-dlp searches for plugins (e.g. a PO-token provider), as yt-dlp's "
                            "--plugin-dirs (repeatable)")
    fetch.add_argument("--check", action="store_true",
                       help="check yt-dlp, the JS runtime, the solver scripts, ffmpeg, the cookies, the proxy and "
                            "whether the host answers, then exit (0: ready, 1: something needed is missing)")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.set_defaults(run=_run_fetch, parser=fetch)

    status = commands.add_parser(
        "status", help="how many clips are present, gone for good and still to try, and whether the run is "
                       "healthy or blocked; export the missing clips as CSV",
        description="Without CONFIG: what the journals of the cache record. With CONFIG (and --data-dir): "
                    "the state of exactly that config's clips per split, cached ones counting as present. The "
                    "share present is compared with what others measured fetching AudioSet and AudioCaps.")
    status.add_argument("config", nargs="?", choices=CONFIGS, help="report exactly this subset's clips")
    add_source_arguments(status, split=False, required=False)  # --data-dir is needed only with CONFIG here
    status.add_argument("--split", choices=(*SPLITS, "all"), default="all",
                        help="which split's clips, with CONFIG")
    status.add_argument("--audio-dir", action="append", default=[], metavar="DIR",
                        help="local audio folder (repeatable), searched before the cache as prepare does")
    status.add_argument("--audio-cache-dir", metavar="DIR", help="the clip cache (default as for fetch)")
    status.add_argument("--journal", action="append", default=[], metavar="JSONL",
                        help="another machine's journal to merge in (repeatable)")
    status.add_argument("--missing-csv", metavar="OUT", help="write the clips that are not ok to this CSV")
    status.add_argument("--present-csv", metavar="OUT",
                        help="with CONFIG: write the clips that have audio, and where it was found, to this CSV")
    status.add_argument("--write-merged", metavar="OUT",
                        help="write the merged journal, one line per clip, to this JSONL file")
    status.add_argument("--json", action="store_true",
                        help="print the report as one JSON document (schema in docs/fetch.md) instead of text")
    status.set_defaults(run=_run_status, parser=status)


def _fetch_number(field: str) -> Callable[[str], int | float | None]:
    """The argparse type of a numeric fetch option: :data:`~audio_dialogues.fetch.options.NUMBERS`' spec."""
    from .fetch.options import NUMBERS

    return NUMBERS[field].argument("--" + field.replace("_", "-"))


def _config_clips(args: argparse.Namespace) -> dict[str, list]:
    """:func:`~audio_dialogues.fetch.clip_lists.config_clips` of ``args.config`` and ``args.split``."""
    from .fetch.clip_lists import config_clips

    return config_clips(args.config, args.split, data_dir=args.data_dir, cache_dir=args.audio_cache_dir,
                        **source_kwargs(args))


def _run_fetch(args: argparse.Namespace) -> int:
    from .fetch import FetchInterrupted, FetchOptions, FetchStopped, fetch_clips
    from .fetch.sharding import choose_shard

    shard = choose_shard(args.shard_index, args.num_shards)
    if shard.describe() and not args.check:  # before anything slow: a SLURM log says which shard this is
        print(f"fetch {args.config}: {shard.describe()}", flush=True)
    args.shard_index, args.num_shards = shard.index, shard.count
    options = FetchOptions(
        url_template=args.url_template, sample_rate=args.sample_rate, format=args.format,
        workers=args.workers, sleep=args.sleep, rate_limit=args.rate_limit, cookies=args.cookies,
        proxy=args.proxy, retry_failed=args.retry_failed, max_attempts=args.max_attempts,
        num_shards=args.num_shards, shard_index=args.shard_index, reverify=args.reverify,
        js_runtimes=tuple(args.js_runtime), extractor_args=tuple(args.extractor_args),
        plugin_dirs=tuple(args.plugin_dirs))
    if args.check:
        return _run_fetch_check(options)
    if args.config is None or args.data_dir is None:
        raise UsageError("CONFIG and --data-dir are required (except with --check)")
    for folder in args.audio_dir:
        if not os.path.isdir(folder):
            raise UsageError(f"--audio-dir {folder}: not a folder")
    clips = list({c.key: c for split_clips in _config_clips(args).values() for c in split_clips}.values())
    untimed = sum(1 for c in clips if not c.has_times)
    if untimed and not (args.strong_labels or args.musiccaps_csv or args.download_metadata):
        raise UsageError(
            f"{untimed} of {len(clips)} clips have no time window (release-shape annotations): pass the "
            "source metadata (--strong-labels TSV for audioset/comparison, --musiccaps-csv for music, "
            "or --download-metadata)")
    try:
        report = fetch_clips(clips, cache_dir=args.audio_cache_dir, options=options, progress=not args.no_progress,
                             audio_dirs=audio_folders(args, args.config))
    except (FetchInterrupted, FetchStopped) as stopped:  # what was done before is reported; main says why
        if stopped.report is not None:
            print(stopped.report.summary())
        if isinstance(stopped, FetchStopped):
            print("nothing was recorded against any clip: run the same command again once that is fixed",
                  file=sys.stderr)
        raise
    untimed = sum(1 for o in report.outcomes if o.reason == "unknown_times")
    print(f"{args.config}: {len(report.outcomes)} clips" + (
        f" (shard {args.shard_index} of {args.num_shards}; {report.other_shards} in other shards)"
        if args.num_shards > 1 else ""))
    print(report.summary())
    if untimed:
        print(f"{untimed} clips have no time window: pass --strong-labels / --musiccaps-csv", file=sys.stderr)
    if report.transient:
        print("transient failures remain: run the same command again later (see `audio-dialogues status`)",
              file=sys.stderr)
    print(f"cache: {report.cache_dir}")
    return report.exit_code


def _run_fetch_check(options: FetchOptions) -> int:
    """``fetch --check``: one line per thing a fetch needs; what is missing is named last."""
    from .fetch.preflight import check_all, missing

    checks = check_all(options)
    for check in checks:
        print(check.line())
    needed = missing(checks)
    if needed:
        print(f"missing: {', '.join(needed)}", file=sys.stderr)
        return 1
    print("ready to fetch")
    return 0


def _run_status(args: argparse.Namespace) -> int:
    import json

    from .audio import cache as clip_cache
    from .audio.resolver import AudioResolver
    from .fetch import availability, journal

    cache_dir = clip_cache.resolve_cache_dir(args.audio_cache_dir)
    for path in args.journal:
        if problem := input_problem(path):
            args.parser.error(f"--journal {path}: {problem}")
    for folder in args.audio_dir:
        if not os.path.isdir(folder):
            args.parser.error(f"--audio-dir {folder}: not a folder")
    if args.present_csv and not args.config:
        args.parser.error("--present-csv needs CONFIG (and --data-dir): it lists that config's clips")
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        print(f"error: the clip cache {cache_dir} is a file, not a folder", file=sys.stderr)
        return 1
    splits: dict[str, list] = {}
    if args.config:
        if not args.data_dir:
            args.parser.error("CONFIG needs --data-dir (the annotations naming its clips)")
        splits = _config_clips(args)
    journals = [*map(str, journal.journal_files(cache_dir)), *args.journal]
    state = journal.load(cache_dir, args.journal)
    if args.config:
        resolver = AudioResolver(audio_folders(args, args.config), cache_dir)
        where = records.where_found(args.config, args.data_dir, args.audio_dir)
        states = availability.clip_states((c for clips in splits.values() for c in clips), resolver, state,
                                          len(journals), where)
    else:
        states = availability.journal_states(state, len(journals))
    report = availability.StatusReport(str(cache_dir), journals, states, args.config, splits, state.stats.bad_lines)
    notes = sys.stderr if args.json else sys.stdout  # --json: stdout holds the JSON document only
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"cache: {cache_dir}  journals: {len(journals)}")
        print("\n".join(states.summary.lines()))
        print("\n".join(report.lines()))
    if state.stats.bad_lines:
        print(state.stats.describe(), file=sys.stderr)
    if args.missing_csv:
        n = journal.write_missing_csv(states.summary, args.missing_csv)
        print(f"{n} missing clips written to {args.missing_csv}", file=notes)
    if args.present_csv:
        n = journal.write_present_csv(states.clips.values(), states.present, args.present_csv)
        print(f"{n} present clips written to {args.present_csv}", file=notes)
    if args.write_merged:
        n = journal.write_merged(state, args.write_merged)
        print(f"merged journal of {n} clips written to {args.write_merged}", file=notes)
    return 0


# --- evaluate, export ----------------------------------------------------------------------------


def _add_evaluation_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="score model answers with CIDEr, BLEU-4 and ROUGE-L (pycocoevalcap's scorers)",
        description="Scores are computed once over the whole corpus scored (CIDEr's idf depends on it); with "
                    "several --config each is also scored as its own corpus. Exit status 1 on bad input.")
    evaluate.add_argument("--predictions", required=True, metavar="JSONL",
                          help='one {"id", "turn", "prediction"} per line (turn 0-based; optional "config")')
    evaluate.add_argument("--references", metavar="JSONL",
                          help='one {"id", "turn", "reference"} per line; or use --config/--data-dir')
    evaluate.add_argument("--config", nargs="+", choices=CONFIGS,
                          help="take references from these configs' annotations (with --data-dir, --split)")
    add_source_arguments(evaluate, required=False)  # --data-dir is needed only with --config here
    evaluate.add_argument("--tokenizer", choices=TOKENIZERS, default="python",
                          help="python: pure-Python PTB tokenizer (default); ptb: pycocoevalcap's Java one")
    evaluate.add_argument("--allow-missing", action="store_true",
                          help="score reference turns without a prediction as empty answers (and count them)")
    from .evaluation.judge import JudgeOptions

    add_endpoint_arguments(evaluate, JudgeOptions, "judge-")
    evaluate.add_argument("--judge-journal", metavar="JSONL",
                          help="the judge's answer journal (default: beside --predictions, <name>.judge.jsonl)")
    evaluate.add_argument("--output-json", metavar="FILE", help="write the scores as JSON")
    evaluate.add_argument("--output-md", metavar="FILE", help="write the scores as a markdown table")
    evaluate.set_defaults(run=_run_evaluate, parser=evaluate)

    predict = commands.add_parser(
        "predict", help="run an audio chat model over a split turn by turn and write the predictions evaluate reads",
        description="Each assistant turn k is asked with the clip(s), the gold turns before it and user turn k "
                    "(see docs/evaluation.md). Answers are journaled beside --output: re-run the same command "
                    "to resume without asking again.")
    predict.add_argument("config", choices=CONFIGS, help="which subset")
    add_source_arguments(predict)
    predict.add_argument("--output", required=True, metavar="FILE",
                         help="the predictions JSONL (journal, report and audio_url copies are written beside it)")
    predict.add_argument("--audio-dir", action="append", default=[], metavar="DIR",
                         help="local audio folder, searched before the clip cache (repeatable)")
    predict.add_argument("--audio-cache-dir", metavar="DIR", help="the clip cache (default: $AUDIO_DIALOGUES_CACHE, "
                                                                 "else $XDG_CACHE_HOME/audio_dialogues/clips)")
    predict.add_argument("--history", choices=HISTORIES, default="gold",
                         help="what earlier assistant turns the model sees: the gold answers, or its own")
    predict.add_argument("--audio-input", choices=AUDIO_INPUTS, default="input_audio",
                         help="input_audio: base64 WAV parts (OpenAI); audio_url: file:// WAV copies (vLLM, started "
                              "with --allowed-local-media-path covering the output's folder)")
    predict.add_argument("--sample-rate", type=_number(PREDICT_NUMBERS, "sample_rate"), default=16000,
                         help="every clip is resampled to this rate, mono, 16-bit WAV")
    predict.add_argument("--system-prompt", metavar="TEXT", help="a system message before the dialogue (default: none)")
    predict.add_argument("--limit", type=_number(PREDICT_NUMBERS, "limit"), metavar="N",
                         help="at most N dialogues (a small run)")
    add_endpoint_arguments(predict, PredictOptions)
    predict.add_argument("--seed", type=_number(ENDPOINT_NUMBERS, "seed", "--"), help="the API's sampling seed")
    predict.add_argument("--dry-run", action="store_true",
                         help="send nothing: print what would be asked and an estimate of its tokens and cost")
    predict.add_argument("--quiet", action="store_true", help="no progress output")
    predict.set_defaults(run=_run_predict)

    export = commands.add_parser("export", help="write a split's dialogues in an audio language model's chat format")
    export.add_argument("config", choices=CONFIGS, help="which subset")
    add_source_arguments(export)
    export.add_argument("--format", required=True, choices=FORMATS,
                        help="af-chat: Audio Flamingo's chat model (its chat manifest); af3-chat: Audio Flamingo 3; "
                             "qwen-audio: Qwen-Audio-Chat (ChatML, clips as <audio>PATH</audio>); "
                             "hf-messages: transformers processors' apply_chat_template (audio parts with a path); "
                             "llama-factory: LLaMA-Factory / ms-swift (messages + audios, writes dataset_info.json "
                             "beside it); openai-messages: OpenAI chat messages with audio input; "
                             "lhotse: a lhotse CutSet manifest (.jsonl or .jsonl.gz)")
    export.add_argument("--output", required=True, metavar="FILE", help="the file to write (whole or not at all)")
    export.add_argument("--audio-dir", action="append", default=[], metavar="DIR",
                        help="local audio folder, searched before the clip cache (repeatable)")
    export.add_argument("--audio-cache-dir", metavar="DIR", help="the clip cache (default: $AUDIO_DIALOGUES_CACHE, "
                                                                "else $XDG_CACHE_HOME/audio_dialogues/clips)")
    export.add_argument("--missing-audio", choices=EXPORT_MISSING_AUDIO_POLICIES, default="drop",
                        help="dialogues with a clip without local audio: leave out and count (default), or stop")
    export.add_argument("--audio-root", metavar="DIR",
                        help="af-chat: the manifest's dataset_path, names relative to it (default: first --audio-dir, "
                             "else the folder of the authors' release file)")
    export.add_argument("--system-prompt", metavar="TEXT",
                        help="qwen-audio (default: Qwen's own), hf-messages, llama-factory and openai-messages "
                             "(default: none)")
    export.add_argument("--openai-audio", choices=OPENAI_AUDIO, default="inline",
                        help="openai-messages: base64 input_audio, any clip as WAV or MP3 (default), or file:// "
                             "audio_url references (vLLM only, started with --allowed-local-media-path)")
    export.set_defaults(run=_run_export)


def _number(numbers: dict, name: str, prefix: str = "") -> Callable[[str], int | float | None]:
    """The argparse type of the numeric option ``name`` of ``numbers`` (flag, :class:`Number`), as typed."""
    flag, spec = numbers[name]
    return spec.argument(prefix + flag)


def _run_predict(args: argparse.Namespace) -> int:
    from .evaluation.predict import predict

    options = PredictOptions(
        args.config, args.output, args.data_dir, split=args.split, audio_dirs=args.audio_dir,
        audio_cache_dir=args.audio_cache_dir, source_metadata=source_kwargs(args), system_prompt=args.system_prompt,
        seed=args.seed, history=args.history, audio_input=args.audio_input, sample_rate=args.sample_rate,
        limit=args.limit, dry_run=args.dry_run, progress=not args.quiet, **endpoint_arguments(args))
    report = predict(options)
    return 0 if args.dry_run or report.complete else (130 if report.interrupted else 1)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.scoring import evaluate, write_report

    if (args.references is None) == (args.config is None):
        args.parser.error("give --references, or --config with --data-dir (not both)")
    if args.config and not args.data_dir:
        args.parser.error("--config needs --data-dir (the annotations holding the reference answers)")
    judge = None
    if args.judge_model:
        from pathlib import Path

        from .evaluation.judge import JudgeOptions

        journal = Path(args.judge_journal or f"{args.predictions}.judge.jsonl")
        judge = JudgeOptions(journal=journal, **endpoint_arguments(args, "judge-"))
    elif args.judge_base_url:
        args.parser.error("--judge-base-url needs --judge-model")
    report = evaluate(args.predictions, args.references, config=args.config, split=args.split,
                      data_dir=args.data_dir, source_metadata=source_kwargs(args), tokenizer=args.tokenizer,
                      allow_missing=args.allow_missing, judge=judge)
    write_report(report, json_path=args.output_json, markdown_path=args.output_md)
    print(report.to_markdown(), end="")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .audio.cache import resolve_cache_dir
    from .audio.resolver import AudioResolver
    from .export.chat_formats import export_chat

    resolver = AudioResolver(audio_folders(args, args.config), resolve_cache_dir(args.audio_cache_dir))
    report = export_chat(
        read_records(args, args.config), args.format, args.output, config=args.config, split=args.split,
        resolver=resolver, missing_audio=args.missing_audio, audio_root=args.audio_root,
        system_prompt=args.system_prompt, openai_audio=args.openai_audio)
    print(report.summary())
    return 0


# --- generate -------------------------------------------------------------------------------------


def _add_generate_command(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser(
        "generate", help="regenerate the subsets from AudioSet strong labels and MusicCaps with an LLM",
        description="Regenerate audioset, music and comparison with any OpenAI-compatible chat endpoint "
                    "(see docs/generate.md). Answers are journaled: re-run the same command to resume.")
    add_arguments(generate)
    generate.set_defaults(run=_run_generate, parser=generate)


def _run_generate(args: argparse.Namespace) -> int:
    if args.judge_base_url and not args.judge_model:
        args.parser.error("--judge-base-url needs --judge-model")
    report = generate(from_args(args))
    return 0 if isinstance(report, dict) or report.complete else (130 if report.interrupted else 1)


# --- push ------------------------------------------------------------------------------------------


def _add_publish_commands(commands: argparse._SubParsersAction) -> None:
    push = commands.add_parser(
        "push", help="publish configs to a Hub dataset repo (parquet + generated card), or write the repo folder",
        description="One commit per push; unchanged data makes no commit; a failed upload leaves the branch as "
                    "it was. The token comes from HF_TOKEN or 'hf auth login'; HF_ENDPOINT picks the server.")
    push.add_argument("repo_id", metavar="REPO_ID", help="namespace/name of the dataset repo")
    add_source_arguments(push, split=False)
    push.add_argument("--config", action="append", choices=CONFIGS,
                      help="config to publish (repeatable; default: every config with annotations in --data-dir)")
    push.add_argument("--embed-audio", action="store_true",
                      help="embed each clip's audio as a standard Audio column (only for audio you may share)")
    push.add_argument("--audio-dir", action="append", default=[], metavar="DIR", help="local audio folder (repeatable)")
    push.add_argument("--audio-cache-dir", metavar="DIR", help="the clip cache (default: $AUDIO_DIALOGUES_CACHE)")
    push.add_argument("--private", action="store_true",
                      help="create the repo private; an existing public repo is refused, not published to")
    push.add_argument("--revision", metavar="BRANCH", help="branch to push to (created from main if missing)")
    push.add_argument("--commit-message", metavar="TEXT", help="commit title")
    push.add_argument("--output-dir", metavar="DIR", help="write the repo folder here and upload nothing")
    push.set_defaults(run=_run_push)


def _run_push(args: argparse.Namespace) -> int:
    from .publish import build_repo_folder, push

    options = {"audio_dir": args.audio_dir, "audio_cache_dir": args.audio_cache_dir, **source_kwargs(args)}
    if args.output_dir:
        report = build_repo_folder(args.output_dir, args.data_dir, args.config, embed_audio=args.embed_audio,
                                   repo_id=args.repo_id, **options)
        print(f"{report.summary()}\nrepo folder written to {report.root} (nothing uploaded)")
        return 0
    result = push(args.repo_id, args.data_dir, args.config, embed_audio=args.embed_audio, private=args.private,
                  revision=args.revision, commit_message=args.commit_message, **options)
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
