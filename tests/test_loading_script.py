"""The loading script (``loading_script/audio_dialogues.py``) that Hub repos and datasets < 4 use.

datasets >= 4 no longer runs loading scripts, so the end-to-end test runs in the tox env
``datasets36`` (datasets 3.6, ``trust_remote_code=True``); on newer datasets it is skipped and only
the script's module is checked.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import datasets
import pytest

import audio_dialogues
from audio_dialogues.dataset.builder import AudioDialogues

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
