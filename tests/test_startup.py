"""Start-up stays instant: importing the package and the CLI's help load no heavy library.

Each check runs in a fresh interpreter (this test process has long imported everything). What is asserted is
which modules are loaded, not a time: time on a shared machine is noise, and bench/startup.py holds the
0.5 s target. The measured time is still printed in every failure message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audio_dialogues
from audio_dialogues.audio import cache as clip_cache
from audio_dialogues.sources.clips import Clip

SAMPLE = audio_dialogues.sample_paths()
#: Libraries that each cost from tens of milliseconds to seconds to import (asyncio: ~50 ms, only the LLM
#: commands' runs need it; http: urllib.request's http.client, ssl and email, ~35 ms, only downloads need it).
HEAVY = ("datasets", "pandas", "pyarrow", "numpy", "pycocoevalcap", "torch", "torchcodec", "yt_dlp", "soundfile",
         "soxr", "huggingface_hub", "fsspec", "requests", "filelock", "tqdm", "asyncio", "http")

_PROBE = """
import json, sys, time
start = time.perf_counter()
{code}
elapsed = time.perf_counter() - start
heavy = sorted({{name.split(".")[0] for name in sys.modules}} & set({heavy!r}))
print(json.dumps({{"heavy": heavy, "seconds": elapsed}}))
"""


def probe(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter; which heavy modules it left loaded, and how long it took."""
    env = {**os.environ, "AUDIO_DIALOGUES_CACHE": str(tmp_path / "clips")}
    done = subprocess.run([sys.executable, "-c", _PROBE.format(code=code, heavy=HEAVY)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_loads_no_heavy_library(tmp_path: Path) -> None:
    result = probe("import audio_dialogues", tmp_path)
    assert result["heavy"] == [], f"import audio_dialogues took {result['seconds']:.3f} s and loaded {result['heavy']}"


@pytest.mark.parametrize("argv", [
    ["--help"], ["status"], ["status", "--help"], ["fetch", "--help"], ["evaluate", "--help"], ["export", "--help"],
    ["demo", "--help"], ["prepare", "--help"],
])
def test_cli_help_and_status_load_no_heavy_library(argv: list[str], tmp_path: Path) -> None:
    code = ("import contextlib, io\nfrom audio_dialogues.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass")
    result = probe(code, tmp_path)
    command = " ".join(["audio-dialogues", *argv])
    assert result["heavy"] == [], f"{command} took {result['seconds']:.3f} s and loaded {result['heavy']}"


def test_a_fetch_rerun_with_every_clip_cached_loads_no_heavy_library(tmp_path: Path) -> None:
    """Its clips are looked up (a read and a stat each), never decoded: no soundfile, numpy or yt-dlp."""
    clip = Clip("Zz9_Yy8-Xx7", 30.0, 40.0)
    data = tmp_path / "data"
    data.mkdir()
    (data / "audioset_test.jsonl").write_text(json.dumps(
        {"id": "r0", "clips": [clip.to_dict()], "turns": [{"user": "What?", "assistant": "A bell."}]}) + "\n")
    cache = tmp_path / "clips"
    path = clip_cache.audio_path(cache, clip, "flac")
    path.parent.mkdir(parents=True)
    sf.write(path, np.zeros(160_000, dtype=np.int16), 16_000, format="FLAC")
    clip_cache.write_record(cache, clip, clip_cache.ClipRecord(
        file=path.name, size=path.stat().st_size, format="flac", sample_rate=16_000, channels=1, frames=160_000,
        requested_sample_rate=16_000))
    code = ("import contextlib, io\nfrom audio_dialogues.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            f"    assert main(['fetch', 'audioset', '--data-dir', {str(data)!r}, '--no-progress']) == 0\n"
            "assert '1 already cached' in out.getvalue(), out.getvalue()")
    result = probe(code, tmp_path)  # probe's AUDIO_DIALOGUES_CACHE is tmp_path / "clips"
    assert result["heavy"] == [], f"a cached fetch took {result['seconds']:.3f} s and loaded {result['heavy']}"


def test_load_dataset_finds_the_builder_when_datasets_is_imported_after_the_package(tmp_path: Path) -> None:
    code = f"""
import audio_dialogues
assert "datasets" not in sys.modules
from datasets.load import dataset_module_factory  # a name bound after the hook ran
import datasets
ds = datasets.load_dataset("audio_dialogues", "music", split="test", cache_dir={str(tmp_path / "hf")!r},
                           **{SAMPLE!r})
assert ds.num_rows == 2, ds
assert dataset_module_factory("audio_dialogues").module_path == "audio_dialogues.dataset.builder"
assert audio_dialogues.LOAD_DATASET_HOOKED
"""
    probe(code, tmp_path)


def test_load_dataset_finds_the_builder_when_datasets_was_imported_first(tmp_path: Path) -> None:
    code = f"""
import datasets
import audio_dialogues
builder = datasets.load_dataset_builder("audio_dialogues", "comparison", cache_dir={str(tmp_path / "hf")!r},
                                        **{SAMPLE!r})
assert type(builder).__module__ == "audio_dialogues.dataset.builder", type(builder)
assert audio_dialogues.LOAD_DATASET_HOOKED
"""
    probe(code, tmp_path)
