"""``audio-dialogues``: a thin command line over the package's plain functions.

Every command parses its arguments, calls one library function and prints what it returned; no
logic lives here that a Python user could not reach through the library.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audio-dialogues", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_core_commands, _add_fetch_commands, _add_evaluation_commands):
        add(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --- core: demo, prepare (issue 2) ---------------------------------------------------------------


def _add_core_commands(commands: argparse._SubParsersAction) -> None:
    pass


# --- fetch, status (issue 3) ---------------------------------------------------------------------


def _add_fetch_commands(commands: argparse._SubParsersAction) -> None:
    pass


# --- evaluate, export (issue 4) ------------------------------------------------------------------


def _add_evaluation_commands(commands: argparse._SubParsersAction) -> None:
    pass


if __name__ == "__main__":
    sys.exit(main())
