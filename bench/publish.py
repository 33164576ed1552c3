"""Publishing: pushing 160k annotation records, and embedding clips with flat memory and Hub-sized shards.

A Hub stand-in (``tests/hub_server.py``, the same server the tests use) runs in its own process on
127.0.0.1 with its LFS store on disk, so its memory never counts against the pusher. Each push runs in a
fresh interpreter pointed at it with ``HF_ENDPOINT`` and reports its own wall time (imports included) and
peak RSS (``VmHWM``).

1. **Annotations.** 160k canonical ``audioset`` records (98% train, 2% test, 1-4 turns of realistic
   length, strong-label events) pushed with ``audio_dialogues.publish.push``. Target: <= 60 s of wall time.
   Same-run baselines: the floor of reading the JSONL with ``json.loads`` and writing one parquet file
   with pyarrow, and a second push of the unchanged data (which must upload nothing and make no commit).
2. **Embedded audio.** 2,000 ten-second FLAC clips of ``music`` records pushed with ``embed_audio=True``.
   Target: peak RSS <= 1 GB. Same-run baselines: the RSS of a child that only imports what a push imports,
   and the total size of the clips (what holding them all in memory would need).
3. **Large WAVs.** 100 ``comparison`` records of four ten-second 48 kHz stereo 16-bit WAV clips (1.9 MB each,
   768 MB in all; 100 such rows once made one 767 MB shard with a 732 MiB row group and a 3.9 GB peak RSS)
   pushed with ``embed_audio=True``. Targets: peak RSS <= 1 GB; every parquet object the Hub stand-in
   received has row groups within the Hub viewer's limit (about 286 MiB uncompressed, as the parquet
   metadata's ``total_byte_size`` counts) and is at most 500 MB.

    python bench/publish.py [--quick] [--records 160000] [--clips 2000] [--wav-rows 100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Verdicts,
    canonical_record,
    dialogue_turns,
    measure_contention,
    random_ytids,
    status_bytes,
    table,
)

ROOT = Path(__file__).resolve().parents[1]
TARGET_PUSH_S = 60.0
TARGET_EMBED_RSS = 1e9
VIEWER_ROW_GROUP_BYTES = 300_000_000  # the Hub viewer's limit, "about 286 MiB"
TARGET_SHARD_BYTES = 500e6
TEST_FRACTION = 0.02
RESULT_PREFIX = "BENCH_RESULT "
TOKEN = "hf_test_token_audio_dialogues"  # what tests/hub_server.py accepts


# ---------------------------------------------------------------------------------------------- child side


def child(spec: dict) -> dict:
    """One measurement in this fresh interpreter: ``push``, ``floor`` or ``imports``."""
    t0 = time.perf_counter()
    if spec["task"] == "floor":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = []
        for name in sorted(os.listdir(spec["data_dir"])):
            with open(Path(spec["data_dir"]) / name, encoding="utf-8") as f:
                rows.extend(json.loads(line) for line in f)
        pq.write_table(pa.Table.from_pylist(rows), Path(spec["out"]) / "floor.parquet")
        return {"wall_s": time.perf_counter() - t0, "records": len(rows), "peak_rss": status_bytes("VmHWM")}
    from audio_dialogues.publish import push
    from audio_dialogues.publish.repo_folder import build_repo_folder  # noqa: F401 - what a push imports

    if spec["task"] == "imports":
        import huggingface_hub  # noqa: F401
        import matplotlib.pyplot  # noqa: F401

        return {"wall_s": time.perf_counter() - t0, "peak_rss": status_bytes("VmHWM")}
    result = push(spec["repo"], spec["data_dir"], [spec["config"]], embed_audio=spec["embed"],
                  audio_dir=spec.get("audio_dir"))
    shards = [name for splits in result.report.splits.values() for o in splits.values() for name in o.shards]
    rows = sum(o.rows for splits in result.report.splits.values() for o in splits.values())
    return {"wall_s": time.perf_counter() - t0, "peak_rss": status_bytes("VmHWM"), "rows": rows,
            "changed": result.changed, "commit": result.commit, "shards": len(shards),
            "missing_audio": sum(o.missing_audio for s in result.report.splits.values() for o in s.values())}


# --------------------------------------------------------------------------------------------- parent side


def run_child(spec: dict, env: dict[str, str]) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         env=env, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"child {spec['task']} failed:\n{out.stderr[-4000:]}")
    line = next(ln for ln in reversed(out.stdout.splitlines()) if ln.startswith(RESULT_PREFIX))
    result = json.loads(line[len(RESULT_PREFIX):])
    result["process_s"] = time.perf_counter() - t0
    return result


def write_annotations(data_dir: Path, n: int, rng: random.Random) -> None:
    data_dir.mkdir(parents=True)
    ytids = random_ytids(rng, n)
    n_test = max(1, int(n * TEST_FRACTION))
    for split, chunk in (("test", ytids[:n_test]), ("train", ytids[n_test:])):
        with open(data_dir / f"audioset_{split}.jsonl", "w", encoding="utf-8") as f:
            for i, ytid in enumerate(chunk):
                f.write(json.dumps(canonical_record(rng, f"as-{split}-{i}", ytid)) + "\n")


def write_clips(data_dir: Path, audio_dir: Path, n: int, rng: random.Random) -> int:
    """``n`` music records, each with its own 10 s, 16 kHz FLAC clip (a tone in noise); returns total bytes."""
    import numpy as np
    import soundfile as sf

    data_dir.mkdir(parents=True)
    audio_dir.mkdir(parents=True)
    gen = np.random.default_rng(0)
    t = np.arange(160_000, dtype=np.float32) / 16_000
    total = 0
    n_test = max(1, int(n * 0.3))
    ytids = random_ytids(rng, n)
    with open(data_dir / "music_train.jsonl", "w") as train, open(data_dir / "music_test.jsonl", "w") as test:
        for i, ytid in enumerate(ytids):
            start = float(rng.randrange(0, 30)) * 10.0
            path = audio_dir / f"{ytid}_{start:g}_{start + 10:g}.flac"
            tone = 0.3 * np.sin(2 * np.pi * rng.uniform(110, 880) * t) + 0.05 * gen.standard_normal(t.size)
            sf.write(path, tone.astype(np.float32), 16_000, format="FLAC")
            total += path.stat().st_size
            record = {"id": f"mu-{i}", "clips": [{"ytid": ytid, "start_s": start, "end_s": start + 10.0}],
                      "turns": dialogue_turns(rng), "meta": {"caption": "A tone over noise.", "aspects": ["tone"]}}
            (test if i < n_test else train).write(json.dumps(record) + "\n")
    return total


def write_wavs(data_dir: Path, audio_dir: Path, rows: int, rng: random.Random) -> int:
    """``rows`` comparison records of four 10 s, 48 kHz stereo 16-bit WAV clips (noise); returns total bytes."""
    import numpy as np
    import soundfile as sf

    data_dir.mkdir(parents=True)
    audio_dir.mkdir(parents=True)
    gen = np.random.default_rng(1)
    total = 0
    ytids = iter(random_ytids(rng, 4 * rows))
    with open(data_dir / "comparison_train.jsonl", "w", encoding="utf-8") as f:
        for i in range(rows):
            clips = []
            for _ in range(4):
                ytid, start = next(ytids), float(rng.randrange(0, 30)) * 10.0
                path = audio_dir / f"{ytid}_{start:g}_{start + 10:g}.wav"
                sf.write(path, (0.2 * gen.standard_normal((480_000, 2))).astype(np.float32), 48_000,
                         subtype="PCM_16")
                total += path.stat().st_size
                clips.append({"ytid": ytid, "start_s": start, "end_s": start + 10.0})
            f.write(json.dumps({"id": f"cmp-{i}", "clips": clips, "turns": dialogue_turns(rng)}) + "\n")
    return total


def parquet_sizes(lfs_dir: Path) -> tuple[int, int, int]:
    """``(parquet objects, largest object bytes, largest row group total_byte_size)`` in the stand-in's LFS store."""
    import pyarrow.parquet as pq

    objects, largest, largest_group = 0, 0, 0
    for path in lfs_dir.rglob("*"):
        if path.is_file() and _is_parquet(path):
            meta = pq.ParquetFile(path).metadata
            objects += 1
            largest = max(largest, path.stat().st_size)
            largest_group = max([largest_group] + [meta.row_group(i).total_byte_size
                                                    for i in range(meta.num_row_groups)])
    return objects, largest, largest_group


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def start_server(lfs_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    lfs_dir.mkdir(parents=True)
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hub_server.py"), str(lfs_dir)],
                              stdout=subprocess.PIPE, text=True, env=env)
    return server, server.stdout.readline().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16k records and 200 clips (a smoke run)")
    parser.add_argument("--records", type=int)
    parser.add_argument("--clips", type=int)
    parser.add_argument("--wav-rows", type=int, help="comparison rows of four 48 kHz stereo WAVs (default 100)")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(RESULT_PREFIX + json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    n_records = args.records or (16_000 if args.quick else 160_000)
    n_clips = args.clips or (200 if args.quick else 2_000)
    n_wav_rows = args.wav_rows or (25 if args.quick else 100)
    rng = random.Random(1234)
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp, measure_contention() as contention:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AUDIO_DIALOGUES_"))}
        env.update(PYTHONPATH=str(ROOT), HF_HOME=str(root / "hf"), HF_HUB_DISABLE_XET="1", HF_TOKEN=TOKEN,
                   HF_HUB_DISABLE_PROGRESS_BARS="1", AUDIO_DIALOGUES_CACHE=str(root / "clips"))
        server, url = start_server(root / "lfs", env)
        env["HF_ENDPOINT"] = url
        try:
            annotations = root / "annotations"
            write_annotations(annotations, n_records, rng)
            floor = run_child({"task": "floor", "data_dir": str(annotations), "out": str(root)}, env)
            push_spec = {"task": "push", "repo": "bench/annotations", "data_dir": str(annotations),
                         "config": "audioset", "embed": False}
            first = run_child(push_spec, env)
            again = run_child(push_spec, env)

            music, audio = root / "music", root / "audio"
            audio_bytes = write_clips(music, audio, n_clips, rng)
            imports = run_child({"task": "imports"}, env)
            embedded = run_child({"task": "push", "repo": "bench/embedded", "data_dir": str(music),
                                  "config": "music", "embed": True, "audio_dir": str(audio)}, env)

            wav_data, wav_audio = root / "wav-data", root / "wav-audio"
            wav_bytes = write_wavs(wav_data, wav_audio, n_wav_rows, rng)
            wavs = run_child({"task": "push", "repo": "bench/wavs", "data_dir": str(wav_data),
                              "config": "comparison", "embed": True, "audio_dir": str(wav_audio)}, env)
            objects, largest_shard, largest_group = parquet_sizes(root / "lfs")
        finally:
            server.terminate()
            server.wait()
    mb = 1e6
    print(table(["measurement", "records/clips", "wall s (process)", "peak RSS MB"], [
        ("floor: json.loads + one parquet", f"{floor['records']:,}", f"{floor['wall_s']:.1f}",
         f"{floor['peak_rss'] / mb:.0f}"),
        ("push annotations", f"{first['rows']:,}", f"{first['process_s']:.1f}", f"{first['peak_rss'] / mb:.0f}"),
        ("push again (unchanged)", f"{again['rows']:,}", f"{again['process_s']:.1f}",
         f"{again['peak_rss'] / mb:.0f}"),
        ("imports only", "-", f"{imports['process_s']:.1f}", f"{imports['peak_rss'] / mb:.0f}"),
        ("push with embedded audio", f"{embedded['rows']:,}", f"{embedded['process_s']:.1f}",
         f"{embedded['peak_rss'] / mb:.0f}"),
        ("push 48 kHz stereo WAVs (comparison)", f"{wavs['rows']:,}", f"{wavs['process_s']:.1f}",
         f"{wavs['peak_rss'] / mb:.0f}"),
    ]))
    print(f"WAV push: {n_wav_rows * 4:,} clips, {wav_bytes / mb:.0f} MB of WAV in {wavs['shards']} shard(s); "
          f"all {objects} parquet objects on the stand-in: largest {largest_shard / mb:.0f} MB, largest row group "
          f"{largest_group / 2**20:.0f} MiB")
    print(f"clips embedded: {n_clips:,}, {audio_bytes / mb:.0f} MB of FLAC; "
          f"push time {first['process_s'] / floor['process_s']:.1f}x the floor's; embedded push RSS "
          f"{(embedded['peak_rss'] - imports['peak_rss']) / mb:.0f} MB above the imports-only child")
    print(contention.describe())
    verdicts = Verdicts()
    verdicts.check(f"push {n_records:,} annotation records", f"{first['process_s']:.1f} s",
                   f"<= {TARGET_PUSH_S:.0f} s", first["process_s"] <= TARGET_PUSH_S and first["rows"] == n_records)
    verdicts.check("re-push unchanged data: no commit", "no commit" if not again["changed"] else "new commit",
                   "no commit", not again["changed"] and again["commit"] == first["commit"])
    verdicts.check(f"embed {n_clips:,} clips: peak RSS", f"{embedded['peak_rss'] / mb:.0f} MB",
                   f"<= {TARGET_EMBED_RSS / mb:.0f} MB",
                   embedded["peak_rss"] <= TARGET_EMBED_RSS and embedded["missing_audio"] == 0
                   and embedded["rows"] == n_clips)
    verdicts.check(f"embed {n_wav_rows * 4:,} 48 kHz stereo WAVs: peak RSS", f"{wavs['peak_rss'] / mb:.0f} MB",
                   f"<= {TARGET_EMBED_RSS / mb:.0f} MB",
                   wavs["peak_rss"] <= TARGET_EMBED_RSS and wavs["missing_audio"] == 0 and wavs["rows"] == n_wav_rows)
    verdicts.check("largest row group (uncompressed)", f"{largest_group / 2**20:.0f} MiB",
                   f"<= {VIEWER_ROW_GROUP_BYTES / 2**20:.0f} MiB", 0 < largest_group <= VIEWER_ROW_GROUP_BYTES)
    verdicts.check("largest shard", f"{largest_shard / mb:.0f} MB", f"<= {TARGET_SHARD_BYTES / mb:.0f} MB",
                   0 < largest_shard <= TARGET_SHARD_BYTES)
    print(verdicts.render())
    return verdicts.exit_code


if __name__ == "__main__":
    sys.exit(main())
