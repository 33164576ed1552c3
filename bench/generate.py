"""Benchmark ``audio-dialogues generate``: request throughput, item building, and resume after SIGKILL.

Hosted LLMs are not reachable here, so the model is ``tests/openai_server.py`` (aiohttp, OpenAI protocol)
in its own process on 127.0.0.1, answering after a fixed latency. Sources are synthetic AudioSet strong
labels (about 9 events per clip over 400 invented classes, as in the real train file) and an ontology.

(a) throughput as real endpoints look: 10,000 audioset items at 2 s latency with ``--concurrency 256``
    (ideal 128 requests/s), through the package's chat client, the journal and the report. Throughput is
    counted by the server (first request to last answer). Targets: at least 0.9x the ideal
    ``concurrency / latency``, and CPU per request of the whole client (the ``generate`` process: items,
    client, journal, parsing, outputs, report) at most 1.5 ms. Baselines in the same run: a bare aiohttp
    client (no chat client, no journal) and the chat client alone against the same server, which say what this
    machine and server allow at the moment;
(b) items and prompts for 100,000 strong-labelled clips (reading the TSV and ontology, grouping events,
    rendering every prompt and its request key; audioset plus the paper's 64,085 / 16,249 comparison
    groups). Target: <= 20 s;
(c) ``audio-dialogues generate`` SIGKILLed at half way (by journal lines), then run again. Target: 0
    requests for answers the journal held (what "never pay twice" promises); also printed: answers the
    server had sent but the killed process had not yet journaled (lost in the kill, so asked again).

    python bench/generate.py [--items 10000] [--clips 100000] [--kill-items 2000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Verdicts, isolate_caches, measure_contention, print_results, random_ytids  # noqa: E402

LATENCY_S = 2.0
CONCURRENCY = 256
TARGET_THROUGHPUT = 0.9
TARGET_CPU_MS = 1.5
TARGET_BUILD_S = 20.0
N_CLASSES = 400
#: The request of the client-only runs: a prompt of the size generate sends (about 1,500 characters).
MESSAGES = [{"role": "system", "content": "You create conversations about what is heard in a recording. " * 12},
            {"role": "user", "content": "Example 3:\n" + "Sound of Dog: [0.0s-1.0s], [2.5s-3.1s]\n" * 16}]


def write_sources(folder: Path, clips: int, seed: int = 0) -> tuple[Path, Path]:
    """A strong-label TSV of ``clips`` 10 s segments (1-17 events each, ~9 on average) and its ontology."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ontology = folder / "ontology.json"
    ontology.write_text(json.dumps([{"id": f"/x/{i:04d}", "name": f"Sound class {i}"} for i in range(N_CLASSES)]))
    tsv = folder / "audioset_train_strong.tsv"
    with open(tsv, "w") as f:
        f.write("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n")
        for ytid in random_ytids(rng, clips):
            start_ms = rng.randrange(0, 300) * 1000
            for _ in range(rng.randint(1, 17)):
                s = round(rng.uniform(0, 9.5), 3)
                f.write(f"{ytid}_{start_ms}\t{s:.3f}\t{round(rng.uniform(s + 0.1, 10.0), 3):.3f}\t"
                        f"/x/{int(rng.paretovariate(1.2)) % N_CLASSES:04d}\n")
    return tsv, ontology


class Server:
    """tests/openai_server.py (or ``module``, a server built on it) in its own process, so it takes no GIL from
    the client."""

    def __init__(self, latency_s: float, hold_after: int | None = None, module: str = "tests.openai_server") -> None:
        args = [sys.executable, "-m", module, "--latency", str(latency_s)]
        if hold_after is not None:
            args += ["--hold-after", str(hold_after)]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"test server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=30) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}/reset", method="POST"),
                               timeout=30).read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _bare_client(base_url: str, n: int, concurrency: int) -> float:
    """Requests per second of a bare aiohttp client posting small chat requests: the machine's ceiling."""
    import aiohttp

    todo = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            for i in todo:
                async with session.post(f"{base_url}/chat/completions", json={"model": "m", "messages": MESSAGES},
                                        headers={"X-Audio-Dialogues-Item": f"bare:{i}"}) as r:
                    await r.read()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - start)


async def _chat_client(base_url: str, n: int, concurrency: int) -> float:
    """Requests per second of the package's chat client (``audio_dialogues.llm.client``) with nothing around it."""
    from audio_dialogues.llm.client import ChatClient, ModelSettings

    client = ChatClient(ModelSettings("m"), base_url=base_url, max_attempts=1)
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            await client.complete(MESSAGES, {"X-Audio-Dialogues-Item": f"client:{i}"})

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = n / (time.perf_counter() - start)
    await client.close()
    return rate


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_per_request(run: Callable[[], float], server: Server, n: int) -> tuple[float, float, float]:
    """(requests/s, client CPU ms per request, server CPU ms per request) of one run of ``n`` requests."""
    server_cpu, own_cpu = _cpu_s(server.proc.pid), time.process_time()
    rate = run()
    return (rate, 1000 * (time.process_time() - own_cpu) / n,
            1000 * (_cpu_s(server.proc.pid) - server_cpu) / n)


def bench_throughput(root: Path, items: int, verdicts: Verdicts) -> list[tuple]:
    from audio_dialogues.generate import GenerateOptions, generate

    tsv, ontology = write_sources(root / "src_a", items, seed=1)
    server = Server(LATENCY_S)
    probe = min(items, 2560)
    try:
        for client in (_bare_client, _chat_client):  # imports and first connections stay out of the CPU figures
            asyncio.run(client(server.base_url, CONCURRENCY, CONCURRENCY))
        bare = _cpu_per_request(lambda: asyncio.run(_bare_client(server.base_url, probe, CONCURRENCY)), server, probe)
        official = _cpu_per_request(lambda: asyncio.run(_chat_client(server.base_url, probe, CONCURRENCY)),
                                    server, probe)
        server.reset()
        started = time.perf_counter()
        server_cpu, own_cpu = _cpu_s(server.proc.pid), time.process_time()
        report = generate(GenerateOptions(
            root / "out_a", configs=("audioset",), strong_labels=[str(tsv)], ontology=[str(ontology)],
            model="bench", base_url=server.base_url, concurrency=CONCURRENCY, embedder="none", progress=False,
            max_attempts=3), out=lambda _: None)
        wall = time.perf_counter() - started
        run_cpu = 1000 * (time.process_time() - own_cpu) / items, 1000 * (_cpu_s(server.proc.pid) - server_cpu) / items
        stats = server.stats()
    finally:
        server.stop()
    assert report.complete, report.summary()
    span = stats["last_answer_at"] - stats["first_request_at"]
    rate = stats["answered"] / span
    ideal = CONCURRENCY / LATENCY_S
    need = TARGET_THROUGHPUT * ideal
    cores = os.cpu_count() or 1
    verdicts.check(f"(a) throughput, {items:,} items, c={CONCURRENCY}, {LATENCY_S * 1000:.0f} ms",
                   f"{rate:,.0f}/s = {rate / ideal:.2f}x ideal", f">= {TARGET_THROUGHPUT}x {ideal:,.0f}/s",
                   rate >= need)
    verdicts.check("(a) CPU per request of the whole generate run", f"{run_cpu[0]:.2f} ms",
                   f"<= {TARGET_CPU_MS} ms", run_cpu[0] <= TARGET_CPU_MS)
    # A single-threaded client can send at most 1000 / (its CPU ms per request) requests a second, and client
    # and server together at most cores * 1000 / (their CPU ms per request): the rows below say which binds.
    return [("(a) generate, requests/s (server-side span)", f"{rate:,.0f}"),
            ("(a) ideal = concurrency / latency; target", f"{ideal:,.0f}; {need:,.0f}"),
            ("(a) generate, CPU ms per request: whole run / server", f"{run_cpu[0]:.2f} / {run_cpu[1]:.2f}"),
            ("(a) chat client alone (llm.client), requests/s", f"{official[0]:,.0f}"),
            ("(a) chat client alone, CPU ms per request: client / server", f"{official[1]:.2f} / {official[2]:.2f}"),
            ("(a) chat client alone, cores needed at the target rate",
             f"{need * (official[1] + official[2]) / 1000:.2f} of {cores}"),
            ("(a) bare aiohttp client, same server, requests/s", f"{bare[0]:,.0f}"),
            ("(a) bare aiohttp client, CPU ms per request: client / server", f"{bare[1]:.2f} / {bare[2]:.2f}"),
            ("(a) whole run incl. items, outputs, report (s)", f"{wall:.1f}"),
            ("(a) max requests in flight seen by the server", stats["max_in_flight"]),
            ("(a) retries", report.client.get("retries", 0))]


def bench_build(root: Path, clips: int, verdicts: Verdicts) -> list[tuple]:
    from audio_dialogues.generate import GenerateOptions
    from audio_dialogues.generate.prompts import DEFAULT_TEMPLATES
    from audio_dialogues.generate.run import build_items, read_sources
    from audio_dialogues.llm.client import ModelSettings
    from audio_dialogues.llm.journal import request_key

    tsv, ontology = write_sources(root / "src_b", clips, seed=2)
    rows = sum(1 for _ in open(tsv)) - 1
    settings = ModelSettings("bench")
    started = time.perf_counter()
    options = GenerateOptions(root / "out_b", configs=("audioset", "comparison"), strong_labels=[f"test={tsv}"],
                              ontology=[str(ontology)])
    sources = read_sources(options)
    read_s = time.perf_counter() - started
    items = build_items(options, sources)
    built_s = time.perf_counter() - started
    keys = set()
    prompt_chars = 0
    for (config, _), group in items.items():
        template = DEFAULT_TEMPLATES[config]
        for item in group:
            messages = template.render(item)
            prompt_chars += len(messages[-1]["content"])
            keys.add(request_key(settings.body(messages), f"dialogue:{item.key}"))
    total = time.perf_counter() - started
    n_items = sum(len(g) for g in items.values())
    assert len(keys) == n_items
    verdicts.check(f"(b) items + prompts, {clips:,} clips", f"{total:.1f} s", f"<= {TARGET_BUILD_S:.0f} s",
                   total <= TARGET_BUILD_S)
    return [("(b) strong-label rows read", f"{rows:,}"), ("(b) read TSV + ontology (s)", f"{read_s:.1f}"),
            ("(b) items built (audioset + comparison)", f"{n_items:,}"), ("(b) items done at (s)", f"{built_s:.1f}"),
            ("(b) prompts rendered and keyed, done at (s)", f"{total:.1f}")]


def _journal_keys(path: Path) -> set[str]:
    keys = set()
    for line in path.read_bytes().splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except ValueError:
            pass  # a torn last line: the resumed run cuts it
    return keys


def bench_kill(root: Path, items: int, verdicts: Verdicts) -> list[tuple]:
    tsv, ontology = write_sources(root / "src_c", items, seed=3)
    out = root / "out_c"
    server = Server(0.02)
    cmd = [sys.executable, "-m", "audio_dialogues.cli", "generate", "--output-dir", str(out), "--config", "audioset",
           "--strong-labels", str(tsv), "--ontology", str(ontology), "--model", "bench", "--base-url",
           server.base_url, "--embedder", "none", "--concurrency", "16", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "unused"}
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        journal = out / "journal.jsonl"
        deadline = time.monotonic() + 600
        while not journal.exists() or journal.read_bytes().count(b"\n") < items // 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the run ended or stalled before half way: {proc.stderr.read()!r}")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        journaled = _journal_keys(journal)
        answered_before = set(server.stats()["answered_keys"])
        server.reset()
        resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        if resumed.returncode != 0:
            raise RuntimeError(f"the resumed run failed: {resumed.stderr[-2000:]}")
        second = server.stats()
    finally:
        server.stop()
    asked_again = set(second["answered_keys"])
    repeated_journaled = len(asked_again & journaled)
    lost_in_kill = len((answered_before - journaled) & asked_again)
    final = len(_journal_keys(journal))
    verdicts.check(f"(c) SIGKILL at half of {items:,}, then resume", f"{repeated_journaled} repeated",
                   "0 requests for journaled answers", repeated_journaled == 0 and final == items)
    return [("(c) answers journaled at the kill", f"{len(journaled):,}"),
            ("(c) requests of the resumed run", f"{second['requests']:,}"),
            ("(c) journaled answers asked again", repeated_journaled),
            ("(c) answers sent by the server but not yet journaled at the kill", lost_in_kill),
            ("(c) answers in the journal at the end", f"{final:,} of {items:,}")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000, help="items of the throughput run (a)")
    parser.add_argument("--clips", type=int, default=100_000, help="strong-labelled clips of the build run (b)")
    parser.add_argument("--kill-items", type=int, default=2_000, help="items of the SIGKILL run (c)")
    parser.add_argument("--quick", action="store_true", help="2,000 / 10,000 / 400: a smoke run")
    parser.add_argument("--only", choices=("a", "b", "c"), action="append", help="run only these parts")
    args = parser.parse_args()
    if args.quick:
        args.items, args.clips, args.kill_items = 2_000, 10_000, 400
    parts = set(args.only or "abc")
    verdicts = Verdicts()
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="ad-bench-generate-") as tmp, measure_contention() as contention:
        root = Path(tmp)
        isolate_caches(root)
        if "b" in parts:
            rows += bench_build(root, args.clips, verdicts)
        if "a" in parts:
            rows += bench_throughput(root, args.items, verdicts)
        if "c" in parts:
            rows += bench_kill(root, args.kill_items, verdicts)
        shutil.rmtree(root, ignore_errors=True)
    return print_results(rows, contention, verdicts)


if __name__ == "__main__":
    sys.exit(main())
