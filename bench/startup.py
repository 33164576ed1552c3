"""Start-up: ``import audio_dialogues`` and the CLI's help and ``status`` commands, each in a fresh interpreter.

Target: each command in <= 0.5 s, the interpreter's own start-up included (a user waits for all of it),
counted as the child's CPU time (user + system): start-up is single-threaded, so on an idle machine that is
what a user waits, and on a shared machine it stays what it is while wall time can triple. Wall times
are printed too. The baseline, measured interleaved in the same run, is a bare ``python -c pass``; the
ratio shows what the package adds on top of it. Each command runs ``--rounds`` times and is scored by its
best round (other users of the machine only ever slow a round down).

    python bench/startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Verdicts, measure_contention, table  # noqa: E402

TARGET_S = 0.5
CLI = [sys.executable, "-m", "audio_dialogues.cli"]
COMMANDS: dict[str, list[str]] = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import audio_dialogues": [sys.executable, "-c", "import audio_dialogues"],
    "audio-dialogues --help": [*CLI, "--help"],
    "audio-dialogues status": [*CLI, "status"],
    "audio-dialogues status --help": [*CLI, "status", "--help"],
    "audio-dialogues fetch --help": [*CLI, "fetch", "--help"],
    "audio-dialogues evaluate --help": [*CLI, "evaluate", "--help"],
    "audio-dialogues export --help": [*CLI, "export", "--help"],
}


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """``(cpu seconds, wall seconds)`` of one run of ``argv``."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="runs per command; the best one counts")
    args = parser.parse_args(argv)
    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in COMMANDS}  # [cpu, wall]
    with tempfile.TemporaryDirectory(prefix="ad-bench-startup-") as tmp, measure_contention() as contention:
        env = {**os.environ, "AUDIO_DIALOGUES_CACHE": str(Path(tmp, "clips")), "PYTHONDONTWRITEBYTECODE": ""}
        for argv_ in COMMANDS.values():  # warm the OS file cache and the bytecode caches
            _time(argv_, env)
        for _ in range(args.rounds):
            for name, argv_ in COMMANDS.items():
                cpu, wall = _time(argv_, env)
                best[name] = [min(cpu, best[name][0]), min(wall, best[name][1])]
    baseline = best["python -c pass (baseline)"][0]
    print(contention.describe())
    print(table(["command", "best CPU s", "best wall s", "CPU x bare python"],
                [(name, f"{cpu:.3f}", f"{wall:.3f}", f"{cpu / baseline:.2f}") for name, (cpu, wall) in best.items()]))
    verdicts = Verdicts()
    for name, (cpu, _) in best.items():
        if name != "python -c pass (baseline)":
            verdicts.check(name, f"{cpu:.3f} s", f"<= {TARGET_S} s", cpu <= TARGET_S)
    print(verdicts.render())
    return verdicts.exit_code


if __name__ == "__main__":
    sys.exit(main())
