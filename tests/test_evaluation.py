"""Scoring: every number is checked against pycocoevalcap called directly on the same corpus.

The Java path runs pycocoevalcap's own PTBTokenizer (its CoreNLP jar); its tests skip when no ``java``
is on PATH, and fail instead when ``CI`` is set (the ``java`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from audio_dialogues.cli import main
from audio_dialogues.evaluation.scoring import EvaluationError, evaluate
from audio_dialogues.evaluation.tokenizer import TokenizerError, python_ptb_tokenize

needs_java = pytest.mark.usefixtures("java")

# (id, turn, reference, prediction): dialogues of 1-3 turns, answers phrased as models phrase them.
FIXTURE = [
    ("dlg-01", 0, "A dog is barking loudly while cars pass by.", "A dog barks and cars are passing."),
    ("dlg-01", 1, "Yes, the barking gets louder towards the end.", "Yes, it's louder at the end."),
    ("dlg-01", 2, "It sounds like a large dog, probably outdoors.", "A big dog, outside."),
    ("dlg-02", 0, "The music is a slow piano ballad with soft female vocals.",
     "A slow piano song with a woman singing."),
    ("dlg-02", 1, "The mood is melancholic and reflective.", "It feels sad (melancholic)."),
    ("dlg-03", 0, "Rain is falling on a tin roof, with distant thunder.", "Heavy rain on a roof and thunder."),
    ("dlg-03", 1, "No, there's no speech in this clip.", "No, I don't hear anyone talking."),
    ("dlg-04", 0, "A man is giving a speech to a cheering crowd.", "A man speaks; the crowd cheers."),
    ("dlg-04", 1, "The crowd applauds at the end of the speech.", "People clap at the end."),
    ("dlg-04", 2, "It is probably a political rally, e.g., an election event.", "Maybe a rally or a concert."),
    ("dlg-05", 0, "The track is upbeat R&B with a 4/4 drum beat at about 100 BPM.", "Upbeat R&B, 4/4, ~100 BPM."),
    ("dlg-06", 0, "Birds are chirping and a stream is flowing.", "Birds chirp near flowing water."),
    ("dlg-06", 1, "It was likely recorded in a forest in the morning.", "Probably a forest, early morning."),
    ("dlg-07", 0, "An engine revs up and a car drives away.", "A car engine revs and the car leaves."),
    ("dlg-08", 0, "The guitar plays a repetitive riff over heavy drums.", "A guitar riff with loud drums."),
    ("dlg-08", 1, "The genre is hard rock from the '80s.", "It's 80s hard rock."),
]


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    refs = _write_jsonl(tmp_path / "references.jsonl",
                        [{"id": i, "turn": t, "reference": r, "question": "?"} for i, t, r, _ in FIXTURE])
    preds = _write_jsonl(tmp_path / "predictions.jsonl",
                         [{"id": i, "turn": t, "prediction": p} for i, t, _, p in FIXTURE])
    return preds, refs


def _direct(gts: dict, res: dict) -> dict:
    """pycocoevalcap's scorers, called as its COCOEvalCap does."""
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_items = Cider().compute_score(gts, res)
    rouge, rouge_items = Rouge().compute_score(gts, res)
    return {"CIDEr": cider, "BLEU-4": bleu[3], "ROUGE-L": rouge, "cider_items": cider_items,
            "rouge_items": rouge_items}


def _python_tokenized(rows) -> tuple[dict, dict]:
    gts = {k: [python_ptb_tokenize(r)] for k, (_, _, r, _) in enumerate(rows)}
    res = {k: [python_ptb_tokenize(p)] for k, (_, _, _, p) in enumerate(rows)}
    return gts, res


def test_overall_scores_equal_direct_pycocoevalcap_calls(files):
    preds, refs = files
    report = evaluate(preds, refs)
    direct = _direct(*_python_tokenized(FIXTURE))
    assert report.overall.n == len(FIXTURE)
    assert report.overall.cider == pytest.approx(direct["CIDEr"], abs=1e-12)
    assert report.overall.bleu4 == pytest.approx(direct["BLEU-4"], abs=1e-12)
    assert report.overall.rouge_l == pytest.approx(direct["ROUGE-L"], abs=1e-12)
    assert report.overall.cider > 0.1 and report.overall.rouge_l > 0.1  # a real signal, not all zeros


@needs_java
def test_ptb_tokenizer_path_equals_pycocoevalcap_exactly(files):
    preds, refs = files
    report = evaluate(preds, refs, tokenizer="ptb")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": r}] for k, (_, _, r, _) in enumerate(FIXTURE)})
    res = tokenizer.tokenize({k: [{"caption": p}] for k, (_, _, _, p) in enumerate(FIXTURE)})
    direct = _direct(gts, res)
    assert report.tokenizer == "ptb"
    assert (report.overall.cider, report.overall.bleu4, report.overall.rouge_l) == (
        direct["CIDEr"], direct["BLEU-4"], direct["ROUGE-L"])


@needs_java
def test_python_and_ptb_tokenizers_give_the_same_scores_on_ordinary_answers(files):
    preds, refs = files
    python, ptb = evaluate(preds, refs), evaluate(preds, refs, tokenizer="ptb")
    assert python.to_dict()["overall"] == ptb.to_dict()["overall"]
    assert python.to_dict()["per_turn"] == ptb.to_dict()["per_turn"]


def test_per_turn_groups_use_the_whole_corpus_idf(files):
    preds, refs = files
    report = evaluate(preds, refs)
    direct = _direct(*_python_tokenized(FIXTURE))
    turns = np.array([t for _, t, _, _ in FIXTURE])
    assert sorted(report.per_turn) == [0, 1, 2]
    for turn, scores in report.per_turn.items():
        idx = np.flatnonzero(turns == turn)
        assert scores.n == len(idx)
        # CIDEr and ROUGE-L: mean of the per-item scores of the one corpus-wide computation.
        assert scores.cider == pytest.approx(np.mean(direct["cider_items"][idx]), abs=1e-12)
        assert scores.rouge_l == pytest.approx(np.mean(direct["rouge_items"][idx]), abs=1e-12)
        # BLEU-4: corpus BLEU over the group's items.
        subset = [FIXTURE[i] for i in idx]
        assert scores.bleu4 == pytest.approx(_direct(*_python_tokenized(subset))["BLEU-4"], abs=1e-12)
    assert sum(s.n for s in report.per_turn.values()) == report.overall.n


def test_cider_is_computed_once_over_the_corpus_not_per_dialogue_or_subset(files):
    preds, refs = files
    report = evaluate(preds, refs)
    # Scoring the first-turn items alone gives a different idf, hence a different CIDEr, than the
    # per-turn group (which slices the whole corpus' per-item scores): the corpus matters.
    first = [row for row in FIXTURE if row[1] == 0]
    alone = evaluate([{"id": i, "turn": t, "prediction": p} for i, t, _, p in first],
                     [{"id": i, "turn": t, "reference": r} for i, t, r, _ in first])
    assert alone.overall.cider == pytest.approx(_direct(*_python_tokenized(first))["CIDEr"], abs=1e-12)
    assert abs(alone.overall.cider - report.per_turn[0].cider) > 1e-3
    # And the corpus score is not an average of per-dialogue scores.
    per_dialogue = []
    for dialogue in dict.fromkeys(i for i, _, _, _ in FIXTURE):
        rows = [row for row in FIXTURE if row[0] == dialogue]
        per_dialogue += [_direct(*_python_tokenized(rows))["CIDEr"]] * len(rows)
    assert abs(np.mean(per_dialogue) - report.overall.cider) > 1e-3


def test_several_configs_each_scored_as_its_own_corpus(tmp_path: Path):
    music = [("mc-1", 0, "A violin plays a slow melody.", "Slow violin melody."),
             ("mc-1", 1, "The piece sounds classical.", "It's classical music."),
             ("mc-2", 0, "Electronic dance music with a heavy bass drop.", "EDM with a big bass drop.")]
    rows = [(c, *r) for c, part in (("audioset", FIXTURE), ("music", music)) for r in part]
    refs = [{"id": i, "turn": t, "reference": r, "config": c} for c, i, t, r, _ in rows]
    preds = [{"id": i, "turn": t, "prediction": p} for _, i, t, _, p in rows]  # no config: ids are unambiguous
    report = evaluate(_write_jsonl(tmp_path / "p.jsonl", preds), _write_jsonl(tmp_path / "r.jsonl", refs))
    assert set(report.per_config) == {"audioset", "music"}
    assert report.overall.cider == pytest.approx(_direct(*_python_tokenized(FIXTURE + music))["CIDEr"], abs=1e-12)
    for config, part in (("audioset", FIXTURE), ("music", music)):
        direct = _direct(*_python_tokenized(part))
        assert report.per_config[config].overall.cider == pytest.approx(direct["CIDEr"], abs=1e-12)
        assert report.per_config[config].overall.bleu4 == pytest.approx(direct["BLEU-4"], abs=1e-12)
        assert report.per_config[config].overall.n == len(part)
    as_dict = report.to_dict()
    assert set(as_dict["per_config"]["music"]) == {"overall", "per_turn"}
    assert "### music" in report.to_markdown()


def test_allow_missing_scores_missing_answers_as_empty_and_counts_them(files, tmp_path: Path):
    preds, refs = files
    kept = [{"id": i, "turn": t, "prediction": p} for i, t, _, p in FIXTURE[2:]]
    kept.append({"id": FIXTURE[0][0], "turn": FIXTURE[0][1], "prediction": "   "})  # empty counts as missing
    path = _write_jsonl(tmp_path / "partial.jsonl", kept)
    with pytest.raises(EvaluationError, match=r"partial\.jsonl:15 \(id 'dlg-01', turn 0\): 'prediction' is empty"):
        evaluate(path, refs)
    _write_jsonl(tmp_path / "absent.jsonl", kept[:-1])
    with pytest.raises(EvaluationError, match=r"2 of 16 reference turns have no prediction: id 'dlg-01' turn 0 "
                                              r"\(.*references\.jsonl:1\); id 'dlg-01' turn 1"):
        evaluate(tmp_path / "absent.jsonl", refs)
    report = evaluate(path, refs, allow_missing=True)
    assert report.missing == 2 and report.to_dict()["missing"] == 2
    emptied = [(i, t, r, "" if k < 2 else p) for k, (i, t, r, p) in enumerate(FIXTURE)]
    assert report.overall.cider == pytest.approx(_direct(*_python_tokenized(emptied))["CIDEr"], abs=1e-12)
    assert "2 reference turns had no prediction" in report.to_markdown()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "dlg-01", "turn": 0, "prediction": "x"}', '{"id": "dlg-01", "turn": 0, "prediction": "y"}'],
         r"p\.jsonl:2: duplicate prediction for id 'dlg-01' turn 0 \(first at .*p\.jsonl:1\)"),
        (['{"id": "nope", "turn": 0, "prediction": "x"}'],
         r"1 predictions name a dialogue turn that is not in the references .*p\.jsonl:1: id 'nope' turn 0"),
        (['{"id": "dlg-01", "turn": 7, "prediction": "x"}'], r"p\.jsonl:1: id 'dlg-01' turn 7"),
        (['{"id": "dlg-01", "turn": 0, "prediction": ""}'],
         r"p\.jsonl:1 \(id 'dlg-01', turn 0\): 'prediction' is empty"),
        (['{"id": "dlg-01", "turn": 0, "prediction": "x"}', '{"id": "dlg-01", "turn": 1, "prediction": "x"'],
         r"p\.jsonl:2: malformed JSON Lines record"),
        (['{"id": "dlg-01", "turn": "0", "prediction": "x"}'], r"p\.jsonl:1 \(id 'dlg-01'\): 'turn' must be a 0-based"),
        (['{"id": "dlg-01", "turn": 0, "answer": "x"}'], r"p\.jsonl:1 \(id 'dlg-01', turn 0\): missing 'prediction'"),
        (['[{"id": "dlg-01", "turn": 0, "prediction": "x"}]'], r"p\.jsonl:1: .*looks like a JSON array"),
    ],
    ids=["duplicate", "unknown-id", "unknown-turn", "empty", "bad-json", "turn-type", "missing-key", "json-array"],
)
def test_bad_predictions_are_clear_errors(files, tmp_path: Path, lines, message):
    _, refs = files
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EvaluationError, match=message):
        evaluate(path, refs)


def test_bad_references_are_clear_errors(files, tmp_path: Path):
    preds, _ = files
    path = _write_jsonl(tmp_path / "r.jsonl", [{"id": "a", "turn": 0, "reference": "x"}, {"id": "a", "turn": 0,
                                                                                           "reference": "y"}])
    with pytest.raises(EvaluationError, match=r"r\.jsonl:2: duplicate reference for id 'a' turn 0"):
        evaluate(preds, path)
    _write_jsonl(path, [{"id": "a", "turn": 0, "reference": " "}])
    with pytest.raises(EvaluationError, match=r"r\.jsonl:1 \(id 'a', turn 0\): 'reference' is empty"):
        evaluate(preds, path)
    with pytest.raises(EvaluationError, match="missing.jsonl: reference file does not exist"):
        evaluate(preds, tmp_path / "missing.jsonl")


def test_ptb_without_java_is_a_clear_error(files, monkeypatch, tmp_path: Path):
    preds, refs = files
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java
    with pytest.raises(TokenizerError, match="no 'java' is on PATH"):
        evaluate(preds, refs, tokenizer="ptb")


def _annotations(data_dir: Path) -> None:
    """A canonical-shape annotation file whose assistant turns are the fixture references."""
    dialogues: dict[str, list] = {}
    for i, _, r, _ in FIXTURE:
        dialogues.setdefault(i, []).append({"user": "What do you hear?", "assistant": r})
    ytids = ["abcdefghij" + c for c in "klmnopqrstu"]
    _write_jsonl(data_dir / "audioset_test.jsonl", [
        {"id": i, "clips": [{"ytid": ytids[k], "start_s": 30.0, "end_s": 40.0}], "turns": turns, "meta": {}}
        for k, (i, turns) in enumerate(dialogues.items())])


def test_cli_evaluate_from_config_annotations_writes_json_and_markdown(files, tmp_path: Path, capsys):
    preds, refs = files
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _annotations(data_dir)
    out_json, out_md = tmp_path / "out" / "scores.json", tmp_path / "out" / "scores.md"
    code = main(["evaluate", "--predictions", str(preds), "--config", "audioset", "--data-dir", str(data_dir),
                 "--split", "test", "--output-json", str(out_json), "--output-md", str(out_md)])
    assert code == 0
    scores = json.loads(out_json.read_text())
    library = evaluate(preds, refs).to_dict()
    assert scores["overall"] == library["overall"] and scores["per_turn"] == library["per_turn"]
    assert set(scores["overall"]) == {"CIDEr", "BLEU-4", "ROUGE-L", "n"}
    assert set(scores["per_turn"]) == {"0", "1", "2"}
    assert scores["tokenizer"] == "python" and scores["missing"] == 0
    markdown = out_md.read_text()
    assert markdown == capsys.readouterr().out
    row = next(line for line in markdown.splitlines() if line.startswith("| overall |"))
    assert row == (f"| overall | {len(FIXTURE)} | {scores['overall']['CIDEr']:.4f} | "
                   f"{scores['overall']['BLEU-4']:.4f} | {scores['overall']['ROUGE-L']:.4f} |")


def test_cli_evaluate_reports_bad_input_without_traceback(files, tmp_path: Path, capsys):
    preds, refs = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "dlg-01", "turn": 0, "prediction": "x"}\nnot json\n')
    assert main(["evaluate", "--predictions", str(bad), "--references", str(refs)]) == 1
    assert "bad.jsonl:2: malformed JSON Lines record" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--predictions", str(preds)])  # neither --references nor --config


def test_ids_shared_by_two_configs_need_a_config_in_the_predictions():
    refs = [{"id": "x", "turn": 0, "reference": "A dog barks.", "config": "audioset"},
            {"id": "x", "turn": 0, "reference": "A piano plays.", "config": "music"},
            {"id": "y", "turn": 0, "reference": "Rain falls.", "config": "music"}]
    preds = [{"id": "x", "turn": 0, "prediction": "A dog."}, {"id": "y", "turn": 0, "prediction": "Rain."}]
    with pytest.raises(EvaluationError, match=r"<predictions>\[0\]: id 'x' turn 0 exists in configs audioset, music; "
                                              r"add a 'config' field"):
        evaluate(preds, refs, allow_missing=True)
    preds[0]["config"] = "audioset"
    preds.append({"id": "x", "turn": 0, "prediction": "Piano.", "config": "music"})
    report = evaluate(preds, refs)
    assert report.missing == 0 and report.per_config["music"].overall.n == 2
    assert report.per_config["audioset"].overall.rouge_l == pytest.approx(
        _direct({0: [python_ptb_tokenize("A dog barks.")]}, {0: [python_ptb_tokenize("A dog.")]})["ROUGE-L"])


def test_predictions_with_byte_order_mark_and_crlf_are_read(files, tmp_path: Path):
    preds, refs = files
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + preds.read_bytes().replace(b"\n", b"\r\n"))
    assert evaluate(path, refs).to_dict() == evaluate(preds, refs).to_dict()
    path.write_bytes(b'{"id": "dlg-01", "turn": 0, "prediction": "caf\xe9"}\n')
    with pytest.raises(EvaluationError, match=r"windows\.jsonl:1: not UTF-8 text"):
        evaluate(path, refs)


def test_group_scores_come_from_one_pass_and_equal_pycocoevalcap_on_each_group(files, monkeypatch):
    """Per-turn BLEU-4 is summed from the per-item statistics of the one corpus pass (each item is cooked
    once, not again per group), and equals ``Bleu(4)`` run on the group alone, exactly."""
    from pycocoevalcap.bleu import bleu_scorer
    from pycocoevalcap.cider import cider_scorer

    preds, refs = files
    cooked = {"bleu": 0, "cider": 0}

    def counting(module, key):
        original = module.precook

        def precook(*args, **kwargs):
            cooked[key] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(module, "precook", precook)

    counting(bleu_scorer, "bleu")
    counting(cider_scorer, "cider")
    report = evaluate(preds, refs)
    # each reference and prediction is counted once, and CIDEr reuses those counts
    assert cooked == {"bleu": 2 * len(FIXTURE), "cider": 0}
    monkeypatch.undo()
    turns = np.array([t for _, t, _, _ in FIXTURE])
    for turn, scores in report.per_turn.items():
        subset = [FIXTURE[i] for i in np.flatnonzero(turns == turn)]
        assert scores.bleu4 == _direct(*_python_tokenized(subset))["BLEU-4"]
    direct = _direct(*_python_tokenized(FIXTURE))
    assert (report.overall.cider, report.overall.bleu4, report.overall.rouge_l) == (
        direct["CIDEr"], direct["BLEU-4"], direct["ROUGE-L"])


@pytest.mark.parametrize("text", ["...", "!", "-- ; --"])
def test_a_reference_with_no_word_after_tokenising_is_named(files, tmp_path: Path, text: str):
    preds, _ = files
    rows = [{"id": i, "turn": t, "reference": r} for i, t, r, _ in FIXTURE]
    rows[4]["reference"] = text
    refs = _write_jsonl(tmp_path / "refs.jsonl", rows)
    with pytest.raises(EvaluationError, match=r"1 reference turns have no word left after tokenisation .*: "
                                              r".*refs\.jsonl:5 \(id 'dlg-02' turn 1\); fix or remove"):
        evaluate(preds, refs)
    only = _write_jsonl(tmp_path / "only.jsonl", [{"id": "dlg-01", "turn": 0, "reference": text}])
    with pytest.raises(EvaluationError, match=r"only\.jsonl:1 \(id 'dlg-01' turn 0\)"):
        evaluate([{"id": "dlg-01", "turn": 0, "prediction": "A dog."}], only)
