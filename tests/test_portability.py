"""What the package writes opens with plain `datasets`; its own reads still decode with the fast path."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
from packaging.requirements import Requirement

import audio_dialogues
from audio_dialogues.dataset.decoding import SoundfileAudio

SAMPLE = audio_dialogues.sample_paths()
ROOT = Path(__file__).resolve().parents[1]


def _plain_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that cannot import audio_dialogues (the project is off sys.path)."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**environ, **env}, cwd="/")


@pytest.mark.parametrize("config", ["music", "comparison"])
def test_saved_dataset_opens_without_the_package(tmp_path: Path, config: str) -> None:
    ds = audio_dialogues.load(config, split="test", cache_dir=str(tmp_path / "hf"), **SAMPLE)
    audios = ds.features.get("audios")
    audio = ds.features["audio"] if config == "music" else getattr(audios, "feature", None) or audios[0]
    assert isinstance(audio, SoundfileAudio)  # this package's reads decode with soundfile
    ds.save_to_disk(str(tmp_path / "saved"))
    saved_info = json.loads((tmp_path / "saved" / "dataset_info.json").read_text())
    assert "SoundfileAudio" not in json.dumps(saved_info)
    done = _plain_python(f"""
        import sys, datasets
        ds = datasets.load_from_disk({str(tmp_path / 'saved')!r})
        assert "audio_dialogues" not in sys.modules
        audios = ds.features.get("audios")
        audio = ds.features["audio"] if "audio" in ds.features else getattr(audios, "feature", None) or audios[0]
        print(type(audio).__module__, type(audio).__name__, ds.num_rows)
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == f"datasets.features.audio Audio {ds.num_rows}"


@pytest.mark.usefixtures("torchcodec")
def test_saved_dataset_decodes_without_the_package(tmp_path: Path) -> None:
    """Decoded by datasets' own feature (torchcodec), to the rate the package prepared it for."""
    ds = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path / "hf"), **SAMPLE)
    ds.save_to_disk(str(tmp_path / "saved"))
    done = _plain_python(f"""
        import sys, datasets
        first = datasets.load_from_disk({str(tmp_path / 'saved')!r})[0]["audio"]
        assert "audio_dialogues" not in sys.modules
        print(len(first["array"]), first["sampling_rate"])
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "160000 16000"


def test_the_fast_decoder_comes_back_on_a_cached_load(tmp_path: Path) -> None:
    first = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path), **SAMPLE)
    cached = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path), **SAMPLE)
    assert cached.cache_files[0]["filename"] == first.cache_files[0]["filename"]
    assert isinstance(cached.features["audio"], SoundfileAudio)
    info = json.loads(Path(cached.cache_files[0]["filename"]).with_name("dataset_info.json").read_text())
    assert info["features"]["audio"]["_type"] == "Audio"


@pytest.mark.usefixtures("torchcodec")
def test_torchcodec_reads_give_the_same_samples_every_time(tmp_path: Path) -> None:
    ds = audio_dialogues.load("audioset", split="train", cache_dir=str(tmp_path), sampling_rate=22_050,
                              decoder="torchcodec", **SAMPLE)
    for example in ds:
        audio = example["audio"]
        first, second = audio["array"], audio["array"]
        assert audio["sampling_rate"] == 22_050
        np.testing.assert_array_equal(first, second)
        assert np.array_equal(first, ds[0]["audio"]["array"]) or example["id"] != ds[0]["id"]


@pytest.mark.skipif(int(datasets.__version__.split(".")[0]) < 4, reason="datasets < 4 decodes without torchcodec")
def test_a_torchcodec_that_cannot_load_names_the_fix(tmp_path: Path) -> None:
    """A torchcodec built for another torch fails at import with a missing symbol; the package says what to do."""
    fake = tmp_path / "fake" / "torchcodec"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError('libtorchcodec_core7.so: undefined symbol: _ZN3c10')\n")
    done = subprocess.run(
        [sys.executable, "-c", "import audio_dialogues; audio_dialogues.load('music', split='test', "
         f"decoder='torchcodec', cache_dir={str(tmp_path / 'hf')!r}, **audio_dialogues.sample_paths())"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": f"{tmp_path / 'fake'}:{ROOT}"})
    assert done.returncode != 0
    assert "undefined symbol" in done.stderr and 'pip install "torch==2.13.*" "torchcodec==0.13.*"' in done.stderr


def test_the_decode_extra_pins_a_pair_that_loads_and_jinja2_is_declared() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extra = [Requirement(r) for r in cfg["options.extras_require"]["decode"].split("\n") if r.strip()]
    pins = {r.name: r.specifier for r in extra}
    assert pins["torch"].contains("2.13.0") and pins["torchcodec"].contains("0.13.0")
    # Any torchcodec other than 0.13 fails to load with torch 2.13 (and vice versa): the extra allows none.
    assert not pins["torchcodec"].contains("0.14.0") and not pins["torchcodec"].contains("0.12.0")
    assert not pins["torch"].contains("2.14.0") and not pins["torch"].contains("2.12.0")
    runtime = [Requirement(r).name.lower() for r in cfg["options"]["install_requires"].split("\n") if r.strip()]
    assert "jinja2" in runtime
