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
def test_a_torchcodec_too_new_for_torch_names_the_release_that_loads(tmp_path: Path) -> None:
    """torch 2.13 beside torchcodec 0.17 (what `pip install ".[decode]"` gives beside torch 2.13: torchcodec's
    wheels declare no torch dependency) fails at import; the package names the torchcodec that loads with it.

    The installed versions are faked by dist-info folders ahead of site-packages; the import fails as torchcodec
    0.17 does with torch 2.13 (tried in a venv: OSError, "Could not load this library: .../libtorchcodec_image.so").
    """
    fake = tmp_path / "fake"
    (fake / "torchcodec").mkdir(parents=True)
    (fake / "torchcodec" / "__init__.py").write_text(
        "raise OSError('Could not load this library: /site-packages/torchcodec/libtorchcodec_image.so')\n")
    for name, version in (("torch", "2.13.0+cpu"), ("torchcodec", "0.17.0")):
        info = fake / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    done = subprocess.run(
        [sys.executable, "-c", "import audio_dialogues; audio_dialogues.load('music', split='test', "
         f"decoder='torchcodec', cache_dir={str(tmp_path / 'hf')!r}, **audio_dialogues.sample_paths())"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": f"{fake}:{ROOT}"})
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("audio_dialogues.dataset.decoding.DecoderUnavailableError: decoder='torchcodec' needs "
                              "torchcodec loadable with the installed torch (torch 2.13.0+cpu, torchcodec 0.17.0): "
                              "OSError: Could not load this library")
    assert 'torchcodec 0.17.0 needs torch >= 2.14' in message
    assert 'keep torch 2.13.0+cpu with pip install "torchcodec==0.13.*", or pip install "torch>=2.14"' in message


@pytest.mark.parametrize("torch,torchcodec,fix", [
    (None, None, 'pip install "audio-dialogues[decode]"'),
    ("2.13.0+cpu", None, 'pip install "torchcodec==0.13.*"'),
    ("2.13.0", "0.14.0", 'torchcodec 0.14.0 needs torch >= 2.14'),
    ("2.13.0", "0.13.0", "load together where FFmpeg's shared libraries are installed"),
    ("2.14.1+cu130", None, 'pip install "torchcodec>=0.16"'),
    ("2.14.1", "0.17.0", "load together where FFmpeg's shared libraries are installed"),
    ("2.16.0", "0.19.0", 'the release made for torch 2.16.0: pip install "torchcodec==0.16.*"'),
])
def test_the_torchcodec_fix_keeps_the_installed_torch(torch: str | None, torchcodec: str | None, fix: str) -> None:
    """Each fix keeps the user's torch: pip's resolver cannot see which torch a torchcodec release needs."""
    from audio_dialogues.dataset.decoding import torchcodec_fix

    assert fix in torchcodec_fix(torch, torchcodec)


#: Pairs that load together: tried in venvs here (torch 2.13.0+cpu, 2.14.1), and the issue's (2.15 with 0.17).
WORKING_PAIRS = [("2.13.0", "0.13.0"), *(("2.14.1", f"0.{minor}.0") for minor in range(13, 18)), ("2.15.0", "0.17.0")]


def test_the_decode_extra_keeps_every_working_pair_and_jinja2_is_declared() -> None:
    """`pip install ".[decode]"` leaves an installed working pair alone: the extra admits every one, and no newer
    release is capped (a cap would downgrade the next working pair)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extra = [Requirement(r) for r in cfg["options.extras_require"]["decode"].split("\n") if r.strip()]
    ranges = {r.name: r.specifier for r in extra}
    assert set(ranges) == {"torch", "torchcodec"}
    for torch, torchcodec in [*WORKING_PAIRS, ("3.0.0", "1.0.0")]:
        assert ranges["torch"].contains(torch) and ranges["torchcodec"].contains(torchcodec), (torch, torchcodec)
    runtime = [Requirement(r).name.lower() for r in cfg["options"]["install_requires"].split("\n") if r.strip()]
    assert "jinja2" in runtime
