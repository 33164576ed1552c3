"""The ``audio-dialogues`` console script: ``demo`` and ``prepare``, run as a user runs them."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import audio_dialogues
from audio_dialogues.cli import build_parser, has_default

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
    # the sample's size, counted from its files, and why its dropped dialogues are dropped
    assert out.startswith("The sample that ships with the package: 15 dialogues (9 train, 6 test, over the three "
                          "configs), 9 ten-second audio clips, ")
    assert out.count("note: 1 dropped on purpose: the sample leaves out this audio") == 2  # music, comparison


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


def test_prepare_is_not_blocked_by_a_split_without_audio_unless_it_names_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "music_train.jsonl").write_text(Path(SAMPLE["data_dir"], "music_train.jsonl").read_text())
    (data / "music_test.jsonl").write_text("".join(
        json.dumps({"id": f"gone-{i}", "clips": [{"ytid": f"Zz99Yy88Xx{i}", "start_s": 0.0, "end_s": 10.0}],
                    "turns": [{"user": "What plays?", "assistant": "A flute."}]}) + "\n" for i in range(2)))
    args = ["prepare", "music", "--data-dir", str(data), "--audio-dir", SAMPLE["audio_dir"], "--musiccaps-csv",
            SAMPLE["musiccaps_csv"], "--audio-cache-dir", str(tmp_path / "clips"), "--cache-dir", str(tmp_path / "hf")]
    every = run(*args, cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert "train: 2 dialogues of 3 records; dropped: 1 no audio found" in every.stdout
    assert " test: 0 dialogues of 2 records; dropped: 2 no audio found" in every.stdout
    assert "no dialogue has audio, so the split is empty; searched " in every.stdout
    assert "music/test: no audio for any of its 2 records" in every.stderr  # logged as it is prepared
    train = run(*args, "--split", "train", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert "train: 2 dialogues of 3 records" in train.stdout and " test:" not in train.stdout
    test = run(*args, "--split", "test", cwd=tmp_path)
    assert test.returncode == 1 and "Traceback" not in test.stderr
    assert "error: music/test: no audio for any of its 2 records (no audio found: 2); searched " in test.stderr


def test_json_errors_read_as_one_phrase_with_the_column(tmp_path: Path) -> None:
    """json's reasons that end in "at" ("Invalid control character at") get the column, not a doubled "at"."""
    journal = tmp_path / "other-machine.jsonl"
    journal.write_text('{"a": "\x01"}\n')
    status = run("status", "--audio-cache-dir", str(tmp_path / "cache"), "--journal", str(journal), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "not JSON (Invalid control character at column 8)" in status.stderr and "at at" not in status.stderr
    data = tmp_path / "data"
    data.mkdir()
    (data / "music_train.jsonl").write_text('{"id": "\x02"}\n')
    (data / "music_test.json").write_text('[{"id": "a"},\n {"id" "b"}]')
    for split, expected in (("train", "music_train.jsonl:1: malformed JSON Lines record: Invalid control character "
                                      "at column 9"),
                            ("test", "music_test.json:2: malformed JSON: Expecting ':' delimiter at column 8")):
        done = run("export", "music", "--split", split, "--data-dir", str(data), "--format", "af3-chat",
                   "--output", str(tmp_path / "out.json"), cwd=tmp_path)
        assert done.returncode == 1 and expected in done.stderr, done.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("prepare", "speech", "--data-dir", ".", cwd=tmp_path).returncode == 2
    assert run("prepare", "music", cwd=tmp_path).returncode == 2


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_command_has_help_and_shows_its_default() -> None:
    commands = _subcommands(build_parser())
    assert {"demo", "prepare", "fetch", "status", "evaluate", "export"} <= set(commands)
    for name, parser in commands.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), f"{name} {action.dest}: no help text"
            if action.option_strings and has_default(action):
                shown = parser._get_formatter()._expand_help(action)
                assert "default" in shown, f"{name} {action.option_strings[-1]}: default {action.default!r} not shown"
        text = parser.format_help()
        assert "`" not in text and "issue" not in text, f"{name} --help shows raw markup:\n{text}"
        if name != "export":  # its options are being reworked on another branch; it gets one there
            assert parser.description, f"{name} --help has no description"
    for name in ("export", "evaluate"):
        split = " ".join(commands[name].format_help().split())
        assert "--split {train,test} which split's dialogues (default: test)" in split
    fetch = " ".join(commands["fetch"].format_help().split())
    assert "seconds each worker waits before each download (default: 0.0)" in fetch
    assert "which shard this machine fetches (0-based) (default: the SLURM array task's position in an array " \
           "job, else 0)" in fetch


def test_top_level_help_has_no_raw_markup(tmp_path: Path) -> None:
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0 and "`" not in done.stdout and "audio-dialogues demo" in done.stdout


@pytest.mark.parametrize("bad", ["a-file/out.json", "a-file/deeper/out.json", "a-folder", "read-only/out.json"])
def test_unwritable_output_paths_are_clear_errors_with_exit_1(tmp_path: Path, bad: str) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "read-only").mkdir(mode=0o500)
    if bad.startswith("read-only") and os.access(tmp_path / "read-only", os.W_OK):
        pytest.skip("running as a user who may write anywhere (root): a read-only folder cannot be made")
    out = str(tmp_path / bad)
    refs = tmp_path / "refs.jsonl"
    refs.write_text('{"id": "a", "turn": 0, "reference": "A dog barks."}\n')
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "a", "turn": 0, "prediction": "A dog."}\n')
    commands = [
        ["evaluate", "--predictions", str(preds), "--references", str(refs), "--output-json", out],
        ["evaluate", "--predictions", str(preds), "--references", str(refs), "--output-md", out],
        ["export", "music", "--data-dir", SAMPLE["data_dir"], "--audio-dir", SAMPLE["audio_dir"],
         "--format", "af-chat", "--output", out],
        ["status", "--audio-cache-dir", str(tmp_path / "cache"), "--missing-csv", out],
        ["status", "--audio-cache-dir", str(tmp_path / "cache"), "--write-merged", out],
    ]
    for argv in commands:
        done = run(*argv, cwd=tmp_path)
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert f"error: {out}: " in done.stderr, done.stderr


def test_an_empty_output_name_is_a_clear_error(tmp_path: Path) -> None:
    done = run("export", "music", "--data-dir", SAMPLE["data_dir"], "--format", "af-chat", "--output", "",
               cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "not a usable file name" in done.stderr


def test_endpoint_options_default_as_the_options_they_fill() -> None:
    """generate, predict and evaluate's judge add their endpoint options with one function; each default is
    that of the options class the command fills (generate samples at 1.0 with 1024 tokens, the judge answers
    in 64), so the command line and the API agree."""
    from dataclasses import fields

    from audio_dialogues.evaluation.judge import JudgeOptions
    from audio_dialogues.evaluation.predict import PredictOptions
    from audio_dialogues.generate.options import GenerateOptions
    from audio_dialogues.llm.endpoint import HELP

    commands = _subcommands(build_parser())
    for command, options, prefix in (("generate", GenerateOptions, ""), ("predict", PredictOptions, ""),
                                     ("evaluate", JudgeOptions, "judge_")):
        actions = {action.dest: action for action in commands[command]._actions}
        defaults = {f.name: f.default for f in fields(options)}
        for name in HELP:
            assert actions[prefix + name].default == defaults[name], (command, name)
    generate = GenerateOptions(Path("o"))
    assert (generate.temperature, generate.max_tokens, generate.seed, JudgeOptions(
        model="j", base_url="http://x", journal=Path("j")).max_tokens) == (1.0, 1024, 0, 64)
