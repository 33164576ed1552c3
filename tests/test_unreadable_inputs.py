"""Paths the command line cannot read or write: one paragraph naming the path and the cause, exit 1, no traceback.

Permissions are real: folders and files are ``chmod``-ed, and the command runs under ``setpriv`` without the
capabilities that let root ignore them (tests/tools.py: ``permissions_bind``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import audio_dialogues
from tests.tools import permissions_bind

SAMPLE = audio_dialogues.sample_paths()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*permissions_bind(), sys.executable, "-m", "audio_dialogues.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ}, timeout=300)


@pytest.fixture()
def folder(tmp_path: Path) -> Iterator[Path]:
    """Music annotations (train: the sample's; test: two clips, one whose audio lies in ``audio/locked``)."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(Path(SAMPLE["data_dir"]) / "music_train.jsonl", data)
    with open(data / "music_test.jsonl", "w") as f:
        for ytid in ("Zz99Yy88Xx0", "bN5-hR7_wK1"):
            f.write(json.dumps({"id": ytid, "clips": [{"ytid": ytid, "start_s": 0.0, "end_s": 10.0}],
                                "turns": [{"user": "What plays?", "assistant": "Chords."}]}) + "\n")
    shutil.copytree(SAMPLE["audio_dir"], tmp_path / "audio")
    (tmp_path / "audio" / "locked").mkdir()
    shutil.copy(tmp_path / "audio" / "bN5-hR7_wK1.flac", tmp_path / "audio" / "locked" / "Zz99Yy88Xx0.flac")
    yield tmp_path
    for path in (tmp_path / "audio" / "locked", tmp_path / "audio", data, data / "music_test.jsonl"):
        path.chmod(0o755)  # so that pytest can remove them


def _prepare(folder: Path, *extra: str) -> list[str]:
    return ["prepare", "music", "--data-dir", str(folder / "data"), "--audio-dir", str(folder / "audio"),
            "--audio-cache-dir", str(folder / "clips"), "--cache-dir", str(folder / "hf"), *extra]


def _export(folder: Path) -> list[str]:
    return ["export", "music", "--data-dir", str(folder / "data"), "--audio-dir", str(folder / "audio"),
            "--audio-cache-dir", str(folder / "clips"), "--format", "af-chat", "--output", str(folder / "out.json")]


def test_an_unreadable_subfolder_of_an_audio_dir_is_skipped_with_a_warning_naming_it(folder: Path) -> None:
    locked = folder / "audio" / "locked"
    locked.chmod(0)
    done = run(*_prepare(folder), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert f"audio_dir: skipped subfolder {locked}: permission denied" in done.stderr
    assert " test: 1 dialogues of 2 records; dropped: 1 no audio found" in done.stdout
    named = run(*_prepare(folder, "--split", "train"), cwd=folder)
    assert named.returncode == 0 and "train: 2 dialogues of 3 records" in named.stdout
    # once it can be read, its audio is found: the prepared copy does not outlive the permission change
    locked.chmod(0o755)
    again = run(*_prepare(folder), cwd=folder)
    assert again.returncode == 0, again.stderr
    assert " test: 2 dialogues of 2 records; dropped: none" in again.stdout


def test_a_split_whose_only_audio_is_unreadable_says_which_folder_was_skipped(folder: Path) -> None:
    (folder / "audio" / "locked").chmod(0)
    (folder / "audio" / "bN5-hR7_wK1.flac").unlink()
    done = run(*_prepare(folder, "--split", "test"), cwd=folder)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (f"error: music/test: no audio for any of its 2 records (no audio found: 2); searched {folder / 'audio'} "
            f"(skipped, not readable: {folder / 'audio' / 'locked'}) and the clip cache") in done.stderr


@pytest.mark.parametrize("command", [_prepare, _export])
@pytest.mark.parametrize("locked,message", [
    ("audio", "error: audio_dir {path}: permission denied"),
    ("data/music_test.jsonl", "error: {path}: permission denied"),
    ("data", "error: annotation folder {path}: permission denied"),
])
def test_unreadable_inputs_are_one_paragraph_naming_the_path(folder: Path, command: Callable[[Path], list[str]],
                                                             locked: str,
                                                             message: str) -> None:
    path = folder / locked
    path.chmod(0)
    done = run(*command(folder), cwd=folder)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert message.format(path=path) in done.stderr


@pytest.mark.parametrize("cache", ["read-only", "read-only/inside"])
def test_a_datasets_cache_that_cannot_be_written_is_named(folder: Path, cache: str) -> None:
    (folder / "read-only").mkdir(mode=0o555)
    done = run(*_prepare(folder)[:-2], "--cache-dir", str(folder / cache), cwd=folder)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {folder / 'read-only'}" in done.stderr and "permission denied" in done.stderr
    assert "the datasets cache (cache_dir=, --cache-dir, $HF_DATASETS_CACHE) must be a folder you can" in done.stderr


def test_an_unreadable_ontology_is_one_paragraph_naming_it(tmp_path: Path) -> None:
    ontology = tmp_path / "ontology.json"
    shutil.copy(SAMPLE["ontology"], ontology)
    ontology.chmod(0)
    try:
        done = run("prepare", "audioset", "--data-dir", SAMPLE["data_dir"], "--audio-dir", SAMPLE["audio_dir"],
                   "--strong-labels", SAMPLE["strong_labels"], "--ontology", str(ontology), "--audio-cache-dir",
                   str(tmp_path / "clips"), "--cache-dir", str(tmp_path / "hf"), cwd=tmp_path)
    finally:
        ontology.chmod(0o644)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"error: {ontology}: permission denied" in done.stderr


def test_preparing_a_split_the_annotations_lack_names_the_splits_they_have(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    shutil.copy(Path(SAMPLE["data_dir"]) / "music_train.jsonl", tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "audio_dialogues.cli", "prepare", "music", "--split", "test",
                           "--data-dir", str(tmp_path / "data"), "--audio-dir", SAMPLE["audio_dir"],
                           "--audio-cache-dir", str(tmp_path / "clips"), "--cache-dir", str(tmp_path / "hf")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "error: music: the annotations given have no 'test' split; they have train" in done.stderr
