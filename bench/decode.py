"""Decode throughput: the package's fast path against a plain soundfile + soxr loop and against torchcodec.

Generates ``--clips`` ten-second clips shaped like AudioSet-SL audio in the wild (``Y<ytid>.wav``,
22.05 kHz mono 16-bit, non-silent: tones, glides, noise bursts) with canonical ``audioset`` annotations,
then measures clips/s of

  (a) a plain loop: ``soundfile.read`` -> mono float32 -> ``soxr.resample`` to 16 kHz (the floor),
  (b) iterating the package's dataset, ``decoder="soundfile"``, ``sampling_rate=16000``,
  (c) iterating it with ``decoder="torchcodec"`` (datasets' own ``Audio``), same rate.

(b) and (c) are prepared first and prepare is *not* timed; both are iterated the same way
(``for ex in ds: ex["audio"]["array"]``). The three paths run interleaved, one after another within each
of ``--rounds`` rounds, so a burst of load from other users hits all three alike. Each ratio is the median
over rounds of that round's ratio (a paired comparison: more robust on a busy machine than best or mean
times); best and median rates are printed too. Targets: b/a >= 0.8, b/c >= 3. A correctness check first
makes sure all three paths return the same audio.

    python bench/decode.py [--quick] [--clips N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Verdicts,
    canonical_record,
    isolate_caches,
    measure_contention,
    random_ytids,
    table,
)

NATIVE_RATE = 22_050
TARGET_RATE = 16_000
CLIP_S = 10.0
TARGET_B_OVER_A = 0.8
TARGET_B_OVER_C = 3.0


def synth_clip(rng: np.random.Generator) -> np.ndarray:
    """Ten seconds of non-silent, broadband audio: a few gliding partials, a noise bed, bursts; peak ~0.6."""
    n = int(NATIVE_RATE * CLIP_S)
    t = np.arange(n, dtype=np.float64) / NATIVE_RATE
    signal = np.zeros(n)
    for _ in range(rng.integers(2, 5)):
        f0, f1 = rng.uniform(80, 4000, size=2)
        phase = 2 * np.pi * np.cumsum(np.linspace(f0, f1, n)) / NATIVE_RATE
        tremolo = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 6) * t + rng.uniform(0, 2 * np.pi))
        signal += rng.uniform(0.1, 0.5) * tremolo * np.sin(phase)
    noise = rng.standard_normal(n)
    noise = np.convolve(noise, np.ones(8) / 8, mode="same")  # tilt towards low frequencies
    bursts = np.zeros(n)
    for _ in range(rng.integers(3, 10)):
        start, length = rng.integers(0, n - 2000), rng.integers(1000, NATIVE_RATE)
        bursts[start : start + length] += np.hanning(len(bursts[start : start + length]))
    signal += noise * (0.05 + 0.3 * bursts)
    return (0.6 * signal / np.max(np.abs(signal))).astype(np.float32)


def make_corpus(root: Path, n: int, seed: int) -> tuple[Path, Path, list[Path]]:
    """``root/audio/Y<ytid>.wav`` (PCM_16, 22.05 kHz mono) and ``root/data/audioset_train.jsonl``."""
    import soundfile as sf

    audio_dir, data_dir = root / "audio", root / "data"
    audio_dir.mkdir()
    data_dir.mkdir()
    py_rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    paths = []
    with open(data_dir / "audioset_train.jsonl", "w") as f:
        for i, ytid in enumerate(random_ytids(py_rng, n)):
            path = audio_dir / f"Y{ytid}.wav"
            sf.write(path, synth_clip(np_rng), NATIVE_RATE, subtype="PCM_16")
            paths.append(path)
            f.write(json.dumps(canonical_record(py_rng, f"bench-{i:06d}", ytid)) + "\n")
    return audio_dir, data_dir, paths


def plain_decode(path: Path) -> np.ndarray:
    """Path (a): what anyone would write by hand with the same two libraries."""
    import soundfile as sf
    import soxr

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return soxr.resample(mono, rate, TARGET_RATE)


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, items) of one call of ``run``."""
    c0, t0 = time.process_time(), time.perf_counter()
    items = run()
    return time.perf_counter() - t0, time.process_time() - c0, items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 clips, 1 round (a smoke run; targets still shown)")
    parser.add_argument("--clips", type=int, default=None, help="number of clips (default 500; >= 500 for the record)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_clips = args.clips or (100 if args.quick else 500)
    rounds = args.rounds or (3 if args.quick else 7)

    with tempfile.TemporaryDirectory(prefix="ad-bench-decode-") as tmp, measure_contention() as contention:
        root = Path(tmp)
        isolate_caches(root)
        import datasets
        import soundfile
        import soxr
        import torch
        import torchcodec

        import audio_dialogues

        t0 = time.perf_counter()
        audio_dir, data_dir, paths = make_corpus(root, n_clips, args.seed)
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"corpus: {n_clips} clips x {CLIP_S:g} s, {NATIVE_RATE} Hz mono PCM_16 Y<ytid>.wav "
              f"({size_mb:.0f} MB, made in {time.perf_counter() - t0:.1f} s) -> {TARGET_RATE} Hz mono float32")

        datasets_by_decoder = {}
        prepare_s = {}
        for decoder in ("soundfile", "torchcodec"):
            t0 = time.perf_counter()
            ds = audio_dialogues.load("audioset", split="train", data_dir=data_dir, audio_dir=audio_dir,
                                      cache_dir=root / "hf_datasets", audio_cache_dir=root / "clip_cache",
                                      decoder=decoder, sampling_rate=TARGET_RATE)
            prepare_s[decoder] = time.perf_counter() - t0
            if len(ds) != n_clips:
                raise SystemExit(f"prepared {len(ds)} of {n_clips} records with decoder={decoder}: bench is invalid")
            datasets_by_decoder[decoder] = ds
        feature_types = {d: type(ds.features["audio"]).__name__ for d, ds in datasets_by_decoder.items()}
        if feature_types != {"soundfile": "SoundfileAudio", "torchcodec": "TorchcodecAudio"}:
            raise SystemExit(f"unexpected audio features {feature_types}: bench is invalid")

        # Same audio from all three paths, else the timing compares different work.
        for i in range(min(5, n_clips)):
            a = plain_decode(paths[i])
            b = datasets_by_decoder["soundfile"][i]["audio"]
            c = np.asarray(datasets_by_decoder["torchcodec"][i]["audio"]["array"], dtype=np.float32)
            if b["path"] != str(paths[i]) or b["sampling_rate"] != TARGET_RATE or b["array"].dtype != np.float32:
                raise SystemExit(f"fast path returned {b['path']} @ {b['sampling_rate']} Hz, {b['array'].dtype}")
            if not np.array_equal(a, b["array"]) or len(c) != len(a) or np.corrcoef(a, c)[0, 1] < 0.99:
                raise SystemExit(f"clip {i}: the three paths disagree (len a/b/c {len(a)}/{len(b['array'])}/{len(c)})")

        def run_a() -> int:
            for path in paths:
                plain_decode(path)
            return len(paths)

        def iterate(ds: datasets.Dataset) -> Callable[[], int]:
            def run() -> int:
                n = 0
                for ex in ds:
                    ex["audio"]["array"]
                    n += 1
                return n

            return run

        runs = {"a": run_a, "b": iterate(datasets_by_decoder["soundfile"]),
                "c": iterate(datasets_by_decoder["torchcodec"])}
        for path in paths:  # page cache warm for every path alike
            path.read_bytes()
        results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in runs}
        for _ in range(rounds):
            for key, run in runs.items():
                results[key].append(timed(run))
        for key, rs in results.items():
            if any(items != n_clips for *_, items in rs):
                raise SystemExit(f"path {key} iterated {[items for *_, items in rs]} clips, expected {n_clips}")

    best = {k: min(w for w, _, _ in rs) for k, rs in results.items()}
    paired = {pair: statistics.median(results[pair[1]][i][0] / results[pair[0]][i][0] for i in range(rounds))
              for pair in (("b", "a"), ("b", "c"))}
    median = {k: statistics.median(w for w, _, _ in rs) for k, rs in results.items()}
    cpu = {k: min(c for _, c, _ in rs) for k, rs in results.items()}
    rate = {k: n_clips / best[k] for k in best}
    labels = {
        "a": "(a) soundfile+soxr loop",
        "b": "(b) package, decoder=soundfile",
        "c": "(c) package, decoder=torchcodec",
    }
    prepared = {"a": "-", "b": f"{prepare_s['soundfile']:.2f}", "c": f"{prepare_s['torchcodec']:.2f}"}
    rows = [(labels[k], f"{rate[k]:.1f}", f"{n_clips / median[k]:.1f}", f"{1000 * best[k] / n_clips:.2f}",
             f"{1000 * cpu[k] / n_clips:.2f}", prepared[k]) for k in ("a", "b", "c")]
    print()
    print(table(["path", "clips/s best", "clips/s median", "ms/clip", "CPU ms/clip", "prepare s (untimed)"], rows))
    print(f"\n{n_clips} clips, {rounds} interleaved round(s); ratios are medians of per-round ratios. Prepare "
          "(index, validate, write Arrow) ran once per decoder before timing and is EXCLUDED from (b)/(c); "
          "iteration is `for ex in ds: ex['audio']['array']` on the eager Dataset for both. CPU ms/clip counts all "
          f"threads of this process (torch threads: {torch.get_num_threads()}).")
    print(f"versions: datasets {datasets.__version__}, soundfile {soundfile.__version__}, soxr {soxr.__version__}, "
          f"torch {torch.__version__}, torchcodec {torchcodec.__version__}, python {sys.version.split()[0]}")
    print(contention.describe())

    verdicts = Verdicts()
    b_over_a, b_over_c = paired[("b", "a")], paired[("b", "c")]
    spread = {pair: sorted(results[pair[1]][i][0] / results[pair[0]][i][0] for i in range(rounds)) for pair in paired}
    print("per-round ratios: " + "; ".join(f"{b}/{a} {', '.join(f'{r:.2f}' for r in rs)}"
                                           for (b, a), rs in spread.items()))
    verdicts.check("b/a (fast path vs plain loop)", f"{b_over_a:.2f}", f">= {TARGET_B_OVER_A}",
                   b_over_a >= TARGET_B_OVER_A)
    verdicts.check("b/c (fast path vs torchcodec)", f"{b_over_c:.2f}", f">= {TARGET_B_OVER_C}",
                   b_over_c >= TARGET_B_OVER_C)
    if n_clips < 500:
        print(f"note: {n_clips} < 500 clips: a smoke run, not a figure for the README")
    print()
    print(verdicts.render())
    return verdicts.exit_code


if __name__ == "__main__":
    sys.exit(main())
