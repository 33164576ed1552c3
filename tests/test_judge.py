"""``evaluate --judge-model``: every answer graded twice (reference first and last), averaged, counted.

The judge is tests/audio_chat_server.py's: it grades an answer by the share of its words that the clip's
content or the other answer holds, and favours the answer shown first by ``POSITION_BIAS``, as real judges
favour a position; averaging both orders must cancel that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audio_dialogues.cli import main
from tests.audio_chat_server import POSITION_BIAS, UNSCORABLE, AudioChatServer, judge_scores
from tests.test_predict import SAMPLE, args

SOURCES = ["--data-dir", SAMPLE["data_dir"], "--strong-labels", SAMPLE["strong_labels"], "--ontology",
           SAMPLE["ontology"], "--musiccaps-csv", SAMPLE["musiccaps_csv"]]


@pytest.fixture()
def server():
    with AudioChatServer() as s:
        yield s


def _section(prompt: str, title: str) -> str:
    return prompt.split(f"## {title}\n", 1)[1].split("\n\n## ", 1)[0].strip()


def test_predict_then_judge_all_three_configs_both_orders_averaged(tmp_path: Path, server: AudioChatServer):
    rows = []
    for config in ("audioset", "music", "comparison"):
        out = tmp_path / f"{config}.jsonl"
        assert main(args(config, out, server.base_url)) == 0
        rows += out.read_text().splitlines()
    preds = tmp_path / "all.jsonl"
    preds.write_text("\n".join(rows) + "\n")
    report_path = tmp_path / "scores.json"
    server.reset()
    assert main(["evaluate", "--predictions", str(preds), "--config", "audioset", "music", "comparison", *SOURCES,
                 "--judge-model", "grader", "--judge-base-url", server.base_url, "--output-json",
                 str(report_path)]) == 0
    judge = json.loads(report_path.read_text())["judge"]
    n = len(rows)
    assert server.stats()["requests"] == 2 * n and len(server.judge_prompts) == 2 * n
    # each item asked in both orders: the two prompts of an item show the same two answers, swapped
    by_item: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for prompt in server.judge_prompts:
        one, two = _section(prompt, "Answer 1"), _section(prompt, "Answer 2")
        by_item.setdefault((_section(prompt, "Question"), frozenset((one, two))), []).append((one, two))
    assert len(by_item) == n and all(len(v) == 2 and v[0] == v[1][::-1] for v in by_item.values())
    # the judge was told what each clip contains
    prompts = "\n".join(server.judge_prompts)
    assert "Ding 2-4.5" in prompts and "A steady pulse of clicks over a low bass note" in prompts
    assert "Aspects: clicks, bass drone, minimal, steady pulse" in prompts and "Clip 2: Sound events" in prompts
    assert judge["grounded"] == n and judge["unscored"] == 0 and judge["overall"]["n"] == n
    # the means: each answer's grade without the position bias plus half of it (shown first once in two)
    expected = []
    for prompt in server.judge_prompts:
        if "heard" in _section(prompt, "Answer 1"):  # the model's answer first
            content, answer, ref = (_section(prompt, "What the clip contains"), _section(prompt, "Answer 1"),
                                    _section(prompt, "Answer 2"))
            expected.append(round(judge_scores(content + " " + ref, answer), 2) + POSITION_BIAS / 2)
    assert judge["overall"]["score"] == pytest.approx(sum(expected) / n, abs=0.01)
    assert set(judge["per_config"]) == {"audioset", "music", "comparison"}
    assert sum(c["overall"]["n"] for c in judge["per_config"].values()) == n
    assert set(judge["per_turn"]) == {"0", "1"}
    assert len(judge["prompt_sha256"]) == 64 and judge["model"] == "grader"
    # a second run asks the judge nothing: its answers are journaled beside the predictions
    server.reset()
    assert main(["evaluate", "--predictions", str(preds), "--config", "audioset", "music", "comparison", *SOURCES,
                 "--judge-model", "grader", "--judge-base-url", server.base_url]) == 0
    assert server.stats()["requests"] == 0 and Path(f"{preds}.judge.jsonl").exists()


def test_a_judge_that_gives_no_grade_is_counted_and_left_out(tmp_path: Path, server: AudioChatServer, capsys):
    refs = tmp_path / "refs.jsonl"
    preds = tmp_path / "preds.jsonl"
    rows = [("d1", 0, "What is heard?", "A dog barks twice.", "A dog barks."),
            ("d1", 1, "Anything else?", "Rain in the background.", f"{UNSCORABLE} rain"),
            ("d2", 0, "Is it loud?", "Yes, very loud.", "")]
    refs.write_text("".join(json.dumps({"id": i, "turn": t, "question": q, "reference": r}) + "\n"
                            for i, t, q, r, _ in rows))
    preds.write_text("".join(json.dumps({"id": i, "turn": t, "prediction": p}) + "\n" for i, t, _, _, p in rows))
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--predictions", str(preds), "--references", str(refs), "--allow-missing",
                 "--judge-model", "grader", "--judge-base-url", server.base_url, "--output-json", str(out)]) == 0
    judge = json.loads(out.read_text())["judge"]
    assert judge["unscored"] == 1 and judge["unscored_reasons"] == {"no grades in the reply": 1}
    assert judge["no_answer"] == 1 and judge["overall"]["n"] == 1 and judge["grounded"] == 0
    assert server.stats()["requests"] == 4  # two items judged, each in both orders; the empty answer not at all
    assert "1 the judge could not grade; 1 turns without an answer were not judged" in capsys.readouterr().out
    # the second turn's prompt carried the first gold turn as history
    history = [p for p in server.judge_prompts if "User: What is heard?\nAssistant: A dog barks twice." in p]
    assert len(history) == 2 and all(_section(p, "Question") == "Anything else?" for p in history)


def test_a_judge_endpoint_that_refuses_stops_with_one_line(tmp_path: Path, server: AudioChatServer, capsys):
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"id": "d", "turn": 0, "reference": "A bell."}) + "\n")
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "d", "turn": 0, "prediction": "A bell rings."}) + "\n")
    server.api_key = "right"
    assert main(["evaluate", "--predictions", str(preds), "--references", str(refs), "--judge-model", "g",
                 "--judge-base-url", server.base_url]) == 1
    err = capsys.readouterr().err
    assert "error: stopped: the judge's endpoint" in err and "HTTP 401" in err and "Traceback" not in err
