"""The prepared-data cache key: contents and the files the records resolve to, nothing else in the clip cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audio_dialogues
from audio_dialogues.audio import index
from audio_dialogues.audio.cache import ClipRecord, audio_path, write_record
from audio_dialogues.dataset.api import clean, prepared_copies, superseded_copies
from audio_dialogues.sources.clips import Clip

SAMPLE = audio_dialogues.sample_paths()
LULLABY = Clip("Wd3-Xs2_Za1", 90.0, 100.0)  # the music/train clip the sample has no audio for


@pytest.fixture()
def inputs(tmp_path: Path) -> dict:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE["data_dir"], data)
    return {**SAMPLE, "data_dir": str(data), "audio_cache_dir": str(tmp_path / "clips")}


def _load(inputs: dict, cache: Path, config: str = "music"):
    return audio_dialogues.load(config, split="train", cache_dir=str(cache), **inputs)


def _put_in_cache(cache_dir: Path, clip: Clip, source: str) -> None:
    """A clip in the cache exactly as a fetch leaves it: audio renamed into place, then its record."""
    path = audio_path(cache_dir, clip, "flac")
    path.parent.mkdir(parents=True, exist_ok=True)
    data, rate = sf.read(source, dtype="float32")
    sf.write(path, data, rate, format="FLAC")
    write_record(cache_dir, clip, ClipRecord(file=path.name, size=path.stat().st_size, format="flac",
                                             sample_rate=rate, channels=1, frames=len(data),
                                             requested_sample_rate=None))


def test_other_fetches_and_journal_writes_reprepare_nothing(inputs: dict, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    first = _load(inputs, tmp_path / "hf")
    clips = Path(inputs["audio_cache_dir"])
    (clips / "journal").mkdir(parents=True, exist_ok=True)
    (clips / "journal" / "host.jsonl").write_text(json.dumps({"clip": "x", "outcome": "ok"}) + "\n")
    (clips / ".yt-dlp").mkdir()
    (clips / ".yt-dlp" / "cache.json").write_text("{}")
    (clips / "ff.lock").write_text("")
    _put_in_cache(clips, Clip("Zz9_Yy8-Xx7", 0.0, 10.0), str(Path(SAMPLE["audio_dir"]) / "bN5-hR7_wK1.flac"))

    # A cached load neither walks a folder nor resolves a record: it only stats the files it used.
    def no_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached load indexed an audio folder")

    monkeypatch.setattr(index.AudioIndex, "__init__", no_walk)
    second = _load(inputs, tmp_path / "hf")
    assert second.cache_files[0]["filename"] == first.cache_files[0]["filename"]
    assert len(prepared_copies(tmp_path / "hf")) == 1


def test_the_missing_clip_arriving_in_the_cache_reprepares(inputs: dict, tmp_path: Path) -> None:
    assert _load(inputs, tmp_path / "hf").num_rows == 2
    _put_in_cache(Path(inputs["audio_cache_dir"]), LULLABY, str(Path(SAMPLE["audio_dir"]) / "bN5-hR7_wK1.flac"))
    again = _load(inputs, tmp_path / "hf")
    assert again.num_rows == 3
    assert "mu-train-lullaby" in again["id"]


def test_a_used_file_rewritten_in_place_reprepares(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    shutil.copytree(SAMPLE["audio_dir"], audio)
    inputs = {**SAMPLE, "audio_dir": str(audio)}
    first = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path / "hf"), **inputs)
    assert len(first[0]["audio"]["array"]) == 160_000
    used = Path(first[0]["audio"]["path"])
    sf.write(used, np.zeros(8_000 * 10 - 800, dtype=np.float32), 8_000)  # a shorter file under the same name
    second = audio_dialogues.load("music", split="test", cache_dir=str(tmp_path / "hf"), **inputs)
    assert second.cache_files[0]["filename"] != first.cache_files[0]["filename"]


def test_superseded_copies_are_listed_and_cleaned(inputs: dict, tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    _load(inputs, hf)
    _load(inputs, hf, "audioset")
    annotation = Path(inputs["data_dir"]) / "music_train.jsonl"
    annotation.write_text(annotation.read_text() + "\n")  # new contents, same records
    current = _load(inputs, hf)
    stale = superseded_copies(hf)
    assert len(stale) == 1 and stale[0].options.startswith("music")
    assert str(stale[0].path) not in current.cache_files[0]["filename"]
    assert clean(hf, dry_run=True) == stale and stale[0].path.exists()
    assert clean(hf) == stale and not stale[0].path.exists()
    assert superseded_copies(hf) == [] and len(prepared_copies(hf)) == 2
    assert _load(inputs, hf).cache_files[0]["filename"] == current.cache_files[0]["filename"]  # still cached
    done = subprocess.run([sys.executable, "-m", "audio_dialogues.cli", "clean", "--cache-dir", str(hf)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "deleted 0 superseded prepared copies" in done.stdout


def test_relative_paths_run_from_two_folders_never_share_a_copy(inputs: dict, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """``audio_dir="audio"`` names a different folder in each working directory, so each gets its own copy."""
    for name, leave_out in (("a", None), ("b", "bN5-hR7_wK1.flac")):
        shutil.copytree(SAMPLE["audio_dir"], tmp_path / name / "audio")
        if leave_out:
            (tmp_path / name / "audio" / leave_out).unlink()
    relative = {**inputs, "audio_dir": "audio"}
    monkeypatch.chdir(tmp_path / "a")
    assert sorted(_load(relative, tmp_path / "hf")["id"]) == ["mu-train-arpeggio", "mu-train-chords"]
    monkeypatch.chdir(tmp_path / "b")
    from_b = _load(relative, tmp_path / "hf")
    assert from_b["id"] == ["mu-train-arpeggio"]
    assert from_b[0]["audio"]["path"].startswith(str(tmp_path / "b" / "audio"))
    # neither copy supersedes the other: both stay, and nothing says otherwise
    assert len(prepared_copies(tmp_path / "hf")) == 2 and superseded_copies(tmp_path / "hf") == []
    assert "superseded" not in caplog.text


def test_superseded_copies_are_logged_only_when_there_are_some(inputs: dict, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    hf = tmp_path / "hf"
    # what a killed prepare leaves: datasets' unfinished folder, with its dataset_info.json already written
    killed = hf / "audio_dialogues" / "music-0123456789abcdef-0123456789abcdef-0123456789abcdef" / "1.0.0"
    (killed / "9f8e7d6c5b4a3210.incomplete").mkdir(parents=True)
    (killed / "9f8e7d6c5b4a3210.incomplete" / "dataset_info.json").write_text("{}")
    _load(inputs, hf)
    _load(inputs, hf, "audioset")
    assert "superseded" not in caplog.text
    assert prepared_copies(hf) and superseded_copies(hf) == [] and clean(hf) == []
    assert (killed / "9f8e7d6c5b4a3210.incomplete").exists()  # never touched
    annotation = Path(inputs["data_dir"]) / "music_train.jsonl"
    annotation.write_text(annotation.read_text() + "\n")
    _load(inputs, hf)
    assert "1 superseded prepared copies of audio_dialogues" in caplog.text
