"""The loading script (``loading_script/audio_dialogues.py``) that Hub repos and datasets < 4 use.

datasets >= 4 no longer runs loading scripts, so the end-to-end test runs in the tox env
``datasets36`` (datasets 3.6, ``trust_remote_code=True``); on newer datasets it is skipped and only
the script's module is checked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

import audio_dialogues
from audio_dialogues.dataset.builder import AudioDialogues
from audio_dialogues.dataset.decoding import DecoderUnavailableError

SCRIPT = Path(__file__).resolve().parents[1] / "loading_script" / "audio_dialogues.py"
DATASETS_MAJOR = int(datasets.__version__.split(".")[0])


def test_script_exposes_the_package_builder() -> None:
    spec = importlib.util.spec_from_file_location("audio_dialogues_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.AudioDialogues is AudioDialogues


@pytest.mark.skipif(DATASETS_MAJOR >= 4, reason="datasets>=4 removed loading scripts; tox env datasets36 runs this")
@pytest.mark.parametrize("streaming", [False, True])
def test_loading_script_builds_the_same_data_as_the_package(tmp_path: Path, streaming: bool) -> None:
    sample = audio_dialogues.sample_paths()
    via_script = datasets.load_dataset(str(SCRIPT), "comparison", split="test", trust_remote_code=True,
                                       cache_dir=str(tmp_path / "script"), streaming=streaming, **sample)
    via_package = audio_dialogues.load("comparison", split="test", cache_dir=str(tmp_path / "pkg"), **sample)
    rows = list(via_script)
    assert [r["id"] for r in rows] == via_package["id"]
    for row, ref in zip(rows, via_package, strict=True):
        assert row["clips"] == ref["clips"] and row["turns"] == ref["turns"]
        assert [len(a["array"]) for a in row["audios"]] == [len(a["array"]) for a in ref["audios"]]



@pytest.mark.skipif(DATASETS_MAJOR >= 4, reason="datasets>=4 removed loading scripts; tox env datasets36 runs this")
def test_the_script_refuses_torchcodec_on_datasets_3(tmp_path: Path) -> None:
    """Through the script too, decoder='torchcodec' on datasets 3.x fails naming why, not decoding with librosa."""
    with pytest.raises(DecoderUnavailableError, match=r"decoder='torchcodec' needs datasets >= 4"):
        datasets.load_dataset(str(SCRIPT), "music", split="test", trust_remote_code=True, decoder="torchcodec",
                              cache_dir=str(tmp_path), **audio_dialogues.sample_paths())


@pytest.mark.skipif(DATASETS_MAJOR >= 4, reason="datasets>=4 removed loading scripts; tox env datasets36 runs this")
def test_a_cached_copy_of_the_script_loads_by_name_offline(tmp_path: Path) -> None:
    """After the script ran once, datasets 3.x offline runs its cached copy for the bare name (no import of the
    package first), passing that name as ``repo_id``: it is not a published repo, and the load works."""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    code = ("import sys, json, datasets; ds = datasets.load_dataset(sys.argv[1], 'music', split='test', "
            "cache_dir=sys.argv[2], trust_remote_code=True, **json.loads(sys.argv[3])); print(ds.num_rows)")
    sample = json.dumps(audio_dialogues.sample_paths())
    for name, offline in ((str(SCRIPT), {}), ("audio_dialogues", {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})):
        done = subprocess.run([sys.executable, "-c", code, name, str(tmp_path / "hf"), sample], capture_output=True,
                              text=True, timeout=300, env={**env, **offline}, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert int(done.stdout.strip().splitlines()[-1]) == 2
