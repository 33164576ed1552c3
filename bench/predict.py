"""Benchmark ``audio-dialogues predict``: its CPU and request size per turn against a bare client's.

Audio models cannot run here, so the endpoint is ``tests/audio_chat_server.py`` in its own process on
127.0.0.1 (it decodes every clip it receives, in its own CPU budget, and answers after a fixed latency).
The split: ``--dialogues`` audioset test dialogues (three turns each, so six requests per clip would be
nothing to convert; here every dialogue has its own clip), each clip a 10 s 44.1 kHz stereo FLAC.

Measured in the same run, both at ``--concurrency 8``, gold history, 16 kHz mono WAV as ``input_audio``:

- ``predict`` through its Python API (records read and resolved, clips hashed and converted, requests
  through the package's client, every answer journaled, the predictions file and report written);
- the *baseline*: the same requests made by a bare loop with nothing around it: the JSONL read with
  ``json``, each clip decoded with soundfile, resampled with soxr and written as WAV once, the chat JSON
  built by hand and posted with a bare aiohttp session (no retries, no journal, no output).

Targets: ``predict``'s CPU per turn at most 1.5x the baseline's plus 2 ms (what the journal, the
request keys, the openai client and the resolution cost), and its request bodies at most 1 % larger
than the baseline's (the same audio bytes, nothing else sent twice).

    python bench/predict.py [--dialogues 200] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Verdicts, isolate_caches, measure_contention, print_results, random_ytids  # noqa: E402
from generate import Server  # noqa: E402

CONCURRENCY = 8
RATE = 16000
CPU_FACTOR, CPU_SLACK_MS, SIZE_FACTOR = 1.5, 2.0, 1.01
TURNS = [("What sound stands out?", "A single bell-like ding that slowly fades."),
         ("When does it happen?", "Around two seconds into the clip."),
         ("Is anything else heard?", "Only a faint hum of traffic in the background.")]


def write_split(root: Path, dialogues: int) -> tuple[Path, Path]:
    """``audioset_test.jsonl`` with one clip per dialogue, and the folder of its FLAC files."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    data, audio = root / "data", root / "audio"
    data.mkdir()
    audio.mkdir()
    t = np.arange(441000) / 44100
    import random

    with open(data / "audioset_test.jsonl", "w") as f:
        for i, ytid in enumerate(random_ytids(random.Random(1), dialogues)):
            left = 0.3 * np.sin(2 * np.pi * (220 + i) * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(audio / f"{ytid}_0_10.flac", np.stack([left, left[::-1]], axis=1).astype(np.float32), 44100)
            turns = [{"user": u, "assistant": a} for u, a in TURNS]
            f.write(json.dumps({"id": f"d{i}", "clips": [{"ytid": ytid, "start_s": 0.0, "end_s": 10.0}],
                                "turns": turns}) + "\n")
    return data, audio


def run_predict(root: Path, data: Path, audio: Path, base_url: str) -> tuple[float, int]:
    """CPU seconds of this process (all threads) for one ``predict`` run, and the turns it wrote."""
    from audio_dialogues.evaluation.predict import PredictOptions, predict

    options = PredictOptions("audioset", root / "out" / "preds.jsonl", data, audio_dirs=[str(audio)],
                             audio_cache_dir=str(root / "cache"), base_url=base_url, model="m",
                             concurrency=CONCURRENCY, progress=False)
    cpu = time.process_time()
    report = predict(options, out=lambda _: None)
    return time.process_time() - cpu, report.written


async def _bare(data: Path, audio: Path, base_url: str) -> int:
    import aiohttp
    import soundfile as sf
    import soxr

    records = [json.loads(line) for line in (data / "audioset_test.jsonl").read_text().splitlines()]
    jobs = [(r, k) for r in records for k in range(len(r["turns"]))]
    wavs: dict[str, str] = {}

    def part(record: dict) -> dict:
        clip = record["clips"][0]
        if clip["ytid"] not in wavs:
            samples, rate = sf.read(audio / f"{clip['ytid']}_0_10.flac", dtype="float32")
            mono = soxr.resample(samples.mean(axis=1), rate, RATE, quality="HQ")
            buffer = io.BytesIO()
            sf.write(buffer, mono, RATE, format="WAV", subtype="PCM_16")
            wavs[clip["ytid"]] = base64.b64encode(buffer.getvalue()).decode("ascii")
        return {"type": "input_audio", "input_audio": {"data": wavs[clip["ytid"]], "format": "wav"}}

    todo = iter(jobs)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        async def worker() -> None:
            for record, k in todo:
                messages: list[dict] = []
                for i in range(k + 1):
                    user = record["turns"][i]["user"]
                    messages.append({"role": "user", "content": [part(record), {"type": "text", "text": user}]
                                     if i == 0 else user})
                    if i < k:
                        messages.append({"role": "assistant", "content": record["turns"][i]["assistant"]})
                body = {"model": "m", "messages": messages, "temperature": 0.0, "max_tokens": 512}
                async with session.post(f"{base_url}/chat/completions", json=body,
                                        headers={"X-Audio-Dialogues-Item": f"bare:{record['id']}:{k}"}) as r:
                    (await r.json())["choices"][0]["message"]["content"]

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(jobs)


def run_bare(data: Path, audio: Path, base_url: str) -> tuple[float, int]:
    cpu = time.process_time()
    n = asyncio.run(_bare(data, audio, base_url))
    return time.process_time() - cpu, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=200, help="dialogues of three turns, one clip each")
    parser.add_argument("--latency", type=float, default=0.02, help="the server's answer latency in seconds")
    args = parser.parse_args()
    verdicts = Verdicts()
    with tempfile.TemporaryDirectory(prefix="ad-bench-predict-") as tmp, measure_contention() as contention:
        root = Path(tmp)
        isolate_caches(root)
        data, audio = write_split(root, args.dialogues)
        import aiohttp  # noqa: F401  (imports paid before the clocks start, for both sides)
        import soundfile  # noqa: F401
        import soxr  # noqa: F401

        import audio_dialogues.dataset.decoding  # noqa: F401
        import audio_dialogues.llm.client  # noqa: F401

        server = Server(args.latency, module="tests.audio_chat_server")
        try:
            bare_cpu, bare_n = run_bare(data, audio, server.base_url)
            bare = server.stats()
            server.reset()
            predict_cpu, predict_n = run_predict(root, data, audio, server.base_url)
            pred = server.stats()
        finally:
            server.stop()
    turns = args.dialogues * len(TURNS)
    rows = []
    for name, cpu, n, stats in (("bare client", bare_cpu, bare_n, bare), ("predict", predict_cpu, predict_n, pred)):
        rows.append((name, n, stats["requests"], f"{1000 * cpu / n:.2f}", f"{stats['request_bytes'] / n / 1024:.1f}"))
    bare_ms, predict_ms = 1000 * bare_cpu / bare_n, 1000 * predict_cpu / max(predict_n, 1)
    verdicts.check("every turn answered", f"predict {predict_n}, bare {bare_n}", f"{turns} each",
                   predict_n == bare_n == turns == pred["requests"])
    verdicts.check("predict CPU per turn", f"{predict_ms:.2f} ms (bare {bare_ms:.2f} ms, overhead "
                   f"{predict_ms - bare_ms:+.2f} ms)", f"<= {CPU_FACTOR}x bare + {CPU_SLACK_MS:g} ms",
                   predict_ms <= CPU_FACTOR * bare_ms + CPU_SLACK_MS)
    size_ratio = (pred["request_bytes"] / max(pred["requests"], 1)) / (bare["request_bytes"] / bare["requests"])
    verdicts.check("request size", f"{size_ratio:.4f}x the bare client's", f"<= {SIZE_FACTOR}x",
                   size_ratio <= SIZE_FACTOR)
    return print_results(rows, contention, verdicts, ["run", "turns", "requests", "CPU ms/turn", "KiB/request"])


if __name__ == "__main__":
    sys.exit(main())
