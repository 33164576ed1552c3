"""``audio-dialogues predict`` against a server that decodes every clip it receives (tests/audio_chat_server.py).

Each answer says what the server heard (each clip's duration, rate and loudness), which turn it was asked,
the last assistant message it was given and the question; the tests recompute that from the sample's
files and annotations, so they prove that the right clips and the right history reached each turn.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import audio_dialogues
from audio_dialogues.audio.resolver import AudioResolver
from audio_dialogues.cli import main
from audio_dialogues.evaluation.scoring import evaluate
from audio_dialogues.sources.annotations import CONFIGS
from audio_dialogues.sources.records import audio_folders, records_by_split
from tests.audio_chat_server import AudioChatServer, expected_answer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = audio_dialogues.sample_paths()
METADATA = {"strong_labels": [SAMPLE["strong_labels"]], "ontology": [SAMPLE["ontology"]],
            "musiccaps_csv": SAMPLE["musiccaps_csv"]}


@pytest.fixture()
def server():
    with AudioChatServer() as s:
        yield s


def args(config: str, out: Path, base_url: str, *more: str, data_dir: str = SAMPLE["data_dir"]) -> list[str]:
    return ["predict", config, "--data-dir", data_dir, "--audio-dir", SAMPLE["audio_dir"],
            "--audio-cache-dir", str(out.parent / "cache"), "--strong-labels", SAMPLE["strong_labels"],
            "--ontology", SAMPLE["ontology"], "--musiccaps-csv", SAMPLE["musiccaps_csv"], "--base-url", base_url,
            "--model", "listener", "--output", str(out), *more]


def expected(config: str, tmp_path: Path, rate: int = 16000, own: list[str] | None = None,
             data_dir: str = SAMPLE["data_dir"]) -> dict[tuple[str, int], str]:
    """Every turn's answer as the server must give it, from the files and the gold annotations."""
    records = records_by_split(config, ["test"], data_dir=data_dir, **METADATA)["test"]
    resolver = AudioResolver(audio_folders(config, data_dir, [SAMPLE["audio_dir"]]), tmp_path / "cache")
    out = {}
    for record in records:
        paths = [resolver.resolve(clip) for clip in record.clips]
        assert all(paths), record.id
        answers: list[str] = []
        for k, turn in enumerate(record.turns):
            history = answers if own is not None else [t.assistant for t in record.turns[:k]]
            out[record.id, k] = expected_answer(paths, rate, history, turn.user, k)
            answers.append(out[record.id, k])
    return out


def predictions(path: Path) -> dict[tuple[str, int], dict]:
    return {(row["id"], row["turn"]): row for row in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("config", CONFIGS)
def test_each_turn_gets_its_clips_and_the_gold_history_and_evaluate_reads_the_output(config, tmp_path, server,
                                                                                      capsys):
    out = tmp_path / "preds.jsonl"
    assert main(args(config, out, server.base_url, "--system-prompt", "Listen.", "--temperature", "0.2")) == 0
    got = predictions(out)
    want = expected(config, tmp_path)
    assert {k: row["prediction"] for k, row in got.items()} == want
    row = next(iter(got.values()))
    assert row["config"] == config and row["system_prompt"] == "Listen." and row["temperature"] == 0.2
    assert row["history"] == "gold" and row["sample_rate"] == 16000 and row["model"] == "listener"
    report = json.loads((tmp_path / "preds.jsonl.report.json").read_text())
    assert report["written"] == report["turns"] == len(want) and report["pending"] == report["empty"] == 0
    assert server.stats()["requests"] == len(want)
    # evaluate reads the file as it is
    scores = evaluate(out, config=config, data_dir=SAMPLE["data_dir"], source_metadata=METADATA)
    assert scores.overall.n == len(want) and scores.missing == 0
    assert main(["evaluate", "--predictions", str(out), "--config", config, "--data-dir", SAMPLE["data_dir"],
                 "--strong-labels", SAMPLE["strong_labels"], "--ontology", SAMPLE["ontology"],
                 "--musiccaps-csv", SAMPLE["musiccaps_csv"]]) == 0


def test_audio_url_parts_and_the_models_own_history_at_another_rate(tmp_path, server):
    """file:// copies at the asked rate (what vLLM reads), and each turn after the model's own answers."""
    out = tmp_path / "preds.jsonl"
    assert main(args("music", out, server.base_url, "--audio-input", "audio_url", "--history", "own",
                     "--sample-rate", "8000")) == 0
    got = {k: row["prediction"] for k, row in predictions(out).items()}
    assert got == expected("music", tmp_path, rate=8000, own=[])
    assert any(k == 1 for _, k in got) and all("8000 Hz" in text for text in got.values())
    copies = list((tmp_path / "preds.jsonl.audio").glob("*.wav"))
    assert len(copies) == 2


def test_a_second_run_asks_nothing_and_a_changed_prompt_asks_again(tmp_path, server):
    out = tmp_path / "preds.jsonl"
    assert main(args("audioset", out, server.base_url)) == 0
    first = out.read_text()
    assert main(args("audioset", out, server.base_url)) == 0
    assert out.read_text() == first and server.stats()["requests"] == 3
    assert main(args("audioset", out, server.base_url, "--system-prompt", "Be brief.")) == 0
    assert server.stats()["requests"] == 6 and server.stats()["repeated"] == 0


def _bigger_split(tmp_path: Path, copies: int) -> str:
    """The sample's audioset test dialogues ``copies`` times over (new ids), for concurrency and kills."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [json.loads(line) for line in Path(SAMPLE["data_dir"], "audioset_test.jsonl").read_text().splitlines()]
    with open(data / "audioset_test.jsonl", "w") as f:
        for i in range(copies):
            for row in rows:
                f.write(json.dumps({**row, "id": f"{row['id']}-{i}"}) + "\n")
    return str(data)


def test_concurrency_is_reached(tmp_path, server):
    server.latency_s = 0.3
    data = _bigger_split(tmp_path, 6)  # 18 turns
    out = tmp_path / "preds.jsonl"
    assert main(args("audioset", out, server.base_url, "--concurrency", "6", data_dir=data)) == 0
    assert server.stats()["max_in_flight"] == 6 and len(predictions(out)) == 18
    # the turns in flight together share one conversion of their clip (two distinct clips in this split)
    assert json.loads((tmp_path / "preds.jsonl.report.json").read_text())["client"]["audio_parts_converted"] == 2


def test_sigkill_mid_run_then_resume_asks_nothing_twice(tmp_path, server):
    data = _bigger_split(tmp_path, 4)  # 12 turns
    out = tmp_path / "preds.jsonl"
    server.hold_after = 5
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "audio_dialogues.cli", *args(
        "audioset", out, server.base_url, "--concurrency", "2", "--quiet", data_dir=data)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while server.stats()["answered"] < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the fifth answer reaches the journal
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert server.stats()["answered"] == 5 and not out.exists()
    server.hold_after = None
    assert main(args("audioset", out, server.base_url, data_dir=data)) == 0
    stats = server.stats()
    assert stats["repeated"] == 0 and stats["distinct_answered"] == 12 and len(predictions(out)) == 12
    assert {k: r["prediction"] for k, r in predictions(out).items()} == expected("audioset", tmp_path, data_dir=data)


def test_429_5xx_and_timeouts_are_retried_and_counted(tmp_path, server):
    server.fault("as-test-ding:0", "429", "500")
    server.fault("as-test-ding:1", "timeout")
    out = tmp_path / "preds.jsonl"
    assert main(args("audioset", out, server.base_url, "--timeout", "1")) == 0
    report = json.loads((tmp_path / "preds.jsonl.report.json").read_text())
    assert report["written"] == 3 and report["client"]["retries"] == 3
    assert set(report["client"]["retry_reasons"]) == {"HTTP 429", "HTTP 500", "timeout (no whole answer within 1 s)"}
    assert server.stats()["statuses"]["429"] == 1


def test_an_endpoint_that_refuses_audio_stops_with_one_clear_line(tmp_path, server, capsys):
    server.reject_audio = True
    out = tmp_path / "preds.jsonl"
    assert main(args("audioset", out, server.base_url)) == 1
    err = capsys.readouterr().err
    assert "error: stopped: the endpoint" in err and "HTTP 400: this model does not support audio input" in err
    assert "--audio-input audio_url" in err and "Traceback" not in err
    assert not out.exists()


def test_an_empty_answer_is_counted_journaled_and_left_for_allow_missing(tmp_path, server, capsys):
    server.fault("as-test-ding:1", "empty")
    out = tmp_path / "preds.jsonl"
    assert main(args("audioset", out, server.base_url)) == 0
    assert "1 turns answered empty: left out of the predictions (journaled)" in capsys.readouterr().out
    assert len(predictions(out)) == 2 and ("as-test-ding", 1) not in predictions(out)
    assert main(args("audioset", out, server.base_url)) == 0 and server.stats()["requests"] == 3  # not asked again
    report = evaluate(out, config="audioset", data_dir=SAMPLE["data_dir"], source_metadata=METADATA,
                      allow_missing=True)
    assert report.missing == 1 and report.overall.n == 3


def test_a_split_without_audio_is_refused_by_name(tmp_path, server, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "preds.jsonl"
    code = main(["predict", "music", "--data-dir", SAMPLE["data_dir"], "--audio-dir", str(empty),
                 "--audio-cache-dir", str(tmp_path / "cache"), "--musiccaps-csv", SAMPLE["musiccaps_csv"],
                 "--base-url", server.base_url, "--model", "m", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "music/test: no audio for any of its 2 records" in err and "--audio-dir" in err
    assert server.stats()["requests"] == 0


def test_dry_run_and_limit_send_nothing(tmp_path, server, capsys):
    out = tmp_path / "preds.jsonl"
    assert main(args("music", out, server.base_url, "--dry-run", "--limit", "1", "--price-in", "1")) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["dialogues"] == 1 and estimate["to_ask"] == 2 and estimate["audio_seconds"] == 20.0
    assert estimate["text_tokens_estimate"]["completion_tokens"] == 2 * 512
    assert estimate["audio_request_bytes_estimate"] == int(20 * 16000 * 2 * 4 / 3)
    assert server.stats()["requests"] == 0 and not out.exists()


def test_own_history_after_an_empty_answer_asks_no_later_turn_and_says_so(tmp_path, server, capsys):
    server.fault("Ju4_Ye6-Gz2:0", "empty")
    out = tmp_path / "preds.jsonl"
    assert main(args("music", out, server.base_url, "--history", "own")) == 0
    assert "1 turns not asked: an earlier answer of their dialogue was empty" in capsys.readouterr().out
    assert set(predictions(out)) == {("-Po9_Ui8-Ty", 0), ("-Po9_Ui8-Ty", 1)} and server.stats()["requests"] == 3
    assert main(args("music", out, server.base_url, "--history", "own")) == 0  # nothing left that could be asked
    assert server.stats()["requests"] == 3


def test_runs_without_hashlib_file_digest_as_on_python_3_10(tmp_path, server, monkeypatch):
    """setup.cfg says python_requires >= 3.10; hashlib.file_digest is 3.11+ (found by mypy at python_version 3.10)."""
    import hashlib

    monkeypatch.delattr(hashlib, "file_digest", raising=False)
    out = tmp_path / "preds.jsonl"
    assert main(args("audioset", out, server.base_url)) == 0
    assert len(predictions(out)) == server.stats()["requests"] == 3
