"""``audio-dialogues``: a thin command line over the package's plain functions.

Every command parses its arguments, calls one library function and prints what it returned; no
logic lives here that a Python user could not reach through the library.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .annotations import CONFIGS, Record, read_split
from .builder import MISSING_AUDIO_POLICIES
from .loading import prepare, sample_paths
from .source_metadata import metadata_sources, open_source_metadata
from .summary import summarise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audio-dialogues", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_core_commands, _add_fetch_commands, _add_evaluation_commands):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --- shared: where annotations and their source metadata come from ------------------------------


def add_source_arguments(parser: argparse.ArgumentParser, *, split: bool = True) -> None:
    """Options naming annotation files and the source metadata that completes release-shape records."""
    parser.add_argument("--data-dir", required=True, help="folder holding {config}_{split}.json or .jsonl")
    if split:
        parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--strong-labels", action="append", metavar="TSV",
                        help="AudioSet strong-label TSV (path or URL); repeat for train and eval")
    parser.add_argument("--musiccaps-csv", metavar="CSV", help="MusicCaps metadata CSV (path or URL)")
    parser.add_argument("--ontology", metavar="JSON", help="AudioSet ontology JSON (path or URL), to name labels")
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


def read_records(args: argparse.Namespace, config: str) -> list[Record]:
    """The validated records of ``args.split`` of ``config``, completed from source metadata."""
    metadata = open_source_metadata(metadata_sources(config, **source_kwargs(args)))
    return read_split(config, args.split, data_dir=args.data_dir, metadata=metadata)


# --- core: demo, prepare (issue 2) ---------------------------------------------------------------


def _add_core_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="build all three configs from the embedded sample and summarise them")
    demo.add_argument("--cache-dir", help="datasets cache folder (default: the datasets default)")
    demo.set_defaults(run=_run_demo)

    prepare = commands.add_parser("prepare", help="prepare a config from annotation files and local audio")
    prepare.add_argument("config", choices=CONFIGS)
    add_source_arguments(prepare, split=False)
    prepare.add_argument("--audio-dir", action="append", default=[], help="local audio folder (repeatable)")
    prepare.add_argument("--audio-cache-dir", help="the clip cache (default: $AUDIO_DIALOGUES_CACHE)")
    prepare.add_argument("--missing-audio", choices=MISSING_AUDIO_POLICIES, default="drop")
    prepare.add_argument("--download-audio", action="store_true", help="fetch clips without local audio first")
    prepare.add_argument("--cache-dir", help="datasets cache folder")
    prepare.set_defaults(run=_run_prepare)


def _run_demo(args: argparse.Namespace) -> int:
    for config in CONFIGS:
        datasets, report = prepare(config, cache_dir=args.cache_dir, **sample_paths())
        print(summarise(config, datasets, report))
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    datasets, report = prepare(
        args.config,
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


# --- fetch, status (issue 3) ---------------------------------------------------------------------


def _add_fetch_commands(commands: argparse._SubParsersAction) -> None:
    pass


# --- evaluate, export (issue 4) ------------------------------------------------------------------


def _add_evaluation_commands(commands: argparse._SubParsersAction) -> None:
    pass


if __name__ == "__main__":
    sys.exit(main())
