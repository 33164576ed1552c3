"""The ``audio-dialogues`` console script: ``demo`` and ``prepare``, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import audio_dialogues

SAMPLE = audio_dialogues.sample_paths()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audio_dialogues.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ}, timeout=300)


def test_demo_builds_all_three_configs_and_summarises(tmp_path: Path) -> None:
    done = run("demo", "--cache-dir", str(tmp_path / "hf"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for config in ("audioset", "music", "comparison"):
        assert f"== {config} ==" in out
    assert "train: 2 dialogues of 3 records; dropped: 1 no audio found" in out  # music and comparison
    assert "turns per dialogue 2.67 (min 1, max 4)" in out  # audioset train: 3 + 1 + 4 turns
    assert "clip Ab12Cd34Ef5 [10s-20s]: 10.00 s at 16000 Hz" in out
    assert "events: Ding 2-4.5s" in out


def test_prepare_reports_drops_and_the_report_survives_a_cached_rerun(tmp_path: Path) -> None:
    args = ["prepare", "comparison", "--data-dir", SAMPLE["data_dir"], "--audio-dir", SAMPLE["audio_dir"],
            "--strong-labels", SAMPLE["strong_labels"], "--ontology", SAMPLE["ontology"],
            "--cache-dir", str(tmp_path / "hf")]
    first = run(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "train: 2 dialogues of 3 records; dropped: 1 no audio found" in first.stdout
    second = run(*args, cwd=tmp_path)
    assert second.returncode == 0 and "Generating" not in second.stderr  # served from cache
    assert second.stdout == first.stdout
    (report,) = (tmp_path / "hf").rglob("audio_dialogues_report.json")
    assert json.loads(report.read_text())["train"]["dropped"] == {"no audio found": 1}


def test_prepare_with_missing_audio_error_fails_with_the_record(tmp_path: Path) -> None:
    done = run("prepare", "music", "--data-dir", SAMPLE["data_dir"], "--audio-dir", SAMPLE["audio_dir"],
               "--missing-audio", "error", "--cache-dir", str(tmp_path / "hf"), cwd=tmp_path)
    assert done.returncode == 1
    assert "error: " in done.stderr and "Traceback" not in done.stderr
    assert "music_train.jsonl:3 (id 'mu-train-lullaby'): no audio for clip Wd3-Xs2_Za1 [90s, 100s)" in done.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("prepare", "speech", "--data-dir", ".", cwd=tmp_path).returncode == 2
    assert run("prepare", "music", cwd=tmp_path).returncode == 2
