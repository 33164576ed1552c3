"""Scoring model answers against the dialogues' reference answers, as the papers do.

Each assistant turn is one item with one reference. Items are tokenised as coco-caption does (see
:mod:`audio_dialogues.evaluation.tokenizer`) and scored with pycocoevalcap's own scorers: ``Bleu(4)`` (its
4-gram score is reported as BLEU-4), ``Cider`` (CIDEr) and ``Rouge`` (ROUGE-L), with the values they
return, unscaled.

What "the corpus" is matters for CIDEr, whose n-gram idf comes from all references scored together:
scores are computed once over the whole corpus, never per batch or per dialogue. When several configs
are scored at once, each config is also scored as its own corpus (``per_config``), which is what a
paper's per-benchmark number is; ``overall`` then pools all of them.

Groups inside a corpus (``per_turn``) take their CIDEr as the mean of the per-item scores of the corpus
computation (so the idf stays the corpus'), their ROUGE-L as the mean of per-item scores, and their
BLEU-4 as corpus BLEU over the group's items (BLEU pools n-gram counts and shares no corpus statistic),
summed from per-item statistics kept from the one BLEU pass rather than scoring each group again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from pycocoevalcap.bleu import bleu_scorer
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider import cider_scorer
from pycocoevalcap.rouge.rouge import Rouge

from ..errors import AudioDialoguesError, UsageError
from ..files import atomic_write, input_problem, iter_jsonl
from . import TOKENIZERS
from .tokenizer import tokenize

PathLike = str | os.PathLike
#: How many offending items an error message lists before summarising the rest.
_EXAMPLES = 5


class EvaluationError(AudioDialoguesError, ValueError):
    """Predictions or references that cannot be scored; the message names the file, record and problem."""


@dataclass(frozen=True)
class Prediction:
    """A model's answer to assistant turn ``turn`` (0-based) of dialogue ``id``."""

    id: str
    turn: int
    prediction: str
    config: str | None = None
    #: ``file:line`` or ``<input>[index]``, for error messages.
    origin: str = ""


@dataclass(frozen=True)
class Reference:
    """The reference answer of assistant turn ``turn`` (0-based) of dialogue ``id``."""

    id: str
    turn: int
    reference: str
    question: str | None = None
    config: str | None = None
    origin: str = ""


@dataclass(frozen=True)
class Scores:
    cider: float
    bleu4: float
    rouge_l: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"CIDEr": self.cider, "BLEU-4": self.bleu4, "ROUGE-L": self.rouge_l, "n": self.n}


@dataclass(frozen=True)
class CorpusReport:
    """Scores of one corpus, overall and per assistant turn (0-based)."""

    overall: Scores
    per_turn: dict[int, Scores]

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.to_dict(), "per_turn": {str(t): s.to_dict() for t, s in self.per_turn.items()}}


@dataclass(frozen=True)
class EvaluationReport:
    overall: Scores
    per_turn: dict[int, Scores]
    #: Each config scored as its own corpus; only filled when several configs were scored together.
    per_config: dict[str, CorpusReport] = field(default_factory=dict)
    tokenizer: str = "python"
    #: Reference turns without a (non-empty) prediction, scored as empty answers (``allow_missing``).
    missing: int = 0
    #: The model judge's grades (:class:`~audio_dialogues.evaluation.judge.JudgeReport`), when one was asked.
    judge: Any = None

    def to_dict(self) -> dict[str, Any]:
        out = CorpusReport(self.overall, self.per_turn).to_dict()
        if self.per_config:
            out["per_config"] = {c: r.to_dict() for c, r in self.per_config.items()}
        out.update(tokenizer=self.tokenizer, missing=self.missing, scorer=f"pycocoevalcap {version('pycocoevalcap')}")
        if self.judge is not None:
            out["judge"] = self.judge.to_dict()
        return out

    def to_markdown(self) -> str:
        """The same numbers as :meth:`to_dict`, as markdown tables."""
        lines: list[str] = []

        def table(report_overall: Scores, per_turn: dict[int, Scores]) -> None:
            lines.append("| group | n | CIDEr | BLEU-4 | ROUGE-L |")
            lines.append("|---|---:|---:|---:|---:|")
            rows = [("overall", report_overall)] + [(f"turn {t}", s) for t, s in per_turn.items()]
            for name, s in rows:
                lines.append(f"| {name} | {s.n} | {s.cider:.4f} | {s.bleu4:.4f} | {s.rouge_l:.4f} |")

        table(self.overall, self.per_turn)
        for config, report in self.per_config.items():
            lines += ["", f"### {config}", ""]
            table(report.overall, report.per_turn)
        lines += [
            "",
            f"Tokenizer: `{self.tokenizer}`; scorers: pycocoevalcap {version('pycocoevalcap')} (values unscaled). "
            "Turns are 0-based.",
        ]
        if self.per_config:
            lines.append("Each config is also scored as its own corpus; `overall` pools all configs into one corpus.")
        if self.missing:
            lines.append(f"{self.missing} reference turns had no prediction and were scored as empty answers.")
        if self.judge is not None:
            lines += self.judge.markdown()
        return "\n".join(lines) + "\n"


# --- reading -------------------------------------------------------------------------------------


def _iter_jsonl(path: Path, what: str) -> Iterable[tuple[str, dict]]:
    """``(origin, object)`` per non-blank line, streaming; any malformed line is an error naming it."""
    if problem := input_problem(path):
        raise EvaluationError(f"{path}: {what} file {problem}")
    for where, obj in iter_jsonl(path, EvaluationError):
        if not isinstance(obj, dict):
            hint = " (this looks like a JSON array: write one JSON object per line)" if isinstance(obj, list) else ""
            raise EvaluationError(f"{where}: a {what} record must be a JSON object, got {type(obj).__name__}{hint}")
        yield where, obj


def _rows(source: PathLike | Iterable[Any], what: str) -> Iterable[tuple[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        return _iter_jsonl(Path(source), what)
    return ((f"<{what}s>[{i}]", row) for i, row in enumerate(source))


def _check_key(where: str, row: Mapping) -> tuple[str, int, str | None]:
    rid, turn, config = row.get("id"), row.get("turn"), row.get("config")
    if not isinstance(rid, str) or not rid:
        raise EvaluationError(f"{where}: 'id' must be a non-empty string, got {rid!r}")
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
        raise EvaluationError(f"{where} (id {rid!r}): 'turn' must be a 0-based integer, got {turn!r}")
    if config is not None and (not isinstance(config, str) or not config):
        raise EvaluationError(f"{where} (id {rid!r}): 'config' must be a string when given, got {config!r}")
    return rid, turn, config


def _text(where: str, rid: str, turn: int, row: Mapping, key: str, *, allow_empty: bool = False) -> str:
    if key not in row:
        raise EvaluationError(f"{where} (id {rid!r}, turn {turn}): missing '{key}'")
    value = row[key]
    if not isinstance(value, str):
        raise EvaluationError(f"{where} (id {rid!r}, turn {turn}): '{key}' must be a string, "
                              f"got {type(value).__name__}")
    if not value.strip() and not allow_empty:
        raise EvaluationError(f"{where} (id {rid!r}, turn {turn}): '{key}' is empty")
    return value


def read_predictions(
    source: PathLike | Iterable[Mapping | Prediction], *, allow_empty: bool = False
) -> list[Prediction]:
    """Predictions from a JSONL file (``{"id", "turn", "prediction"}``, optional ``"config"``) or rows.

    Empty answers are refused unless ``allow_empty`` (they are then scored as missing answers).
    """
    out = []
    for where, row in _rows(source, "prediction"):
        if isinstance(row, Prediction):
            where = row.origin or where
            row = {"id": row.id, "turn": row.turn, "prediction": row.prediction, "config": row.config}
        if not isinstance(row, Mapping):
            raise EvaluationError(f"{where}: a prediction must be a mapping, got {type(row).__name__}")
        rid, turn, config = _check_key(where, row)
        text = _text(where, rid, turn, row, "prediction", allow_empty=allow_empty)
        out.append(Prediction(rid, turn, text, config, where))
    return out


def read_references(source: PathLike | Iterable[Mapping | Reference]) -> list[Reference]:
    """References from a JSONL file (``{"id", "turn", "reference"}``, optional ``"question"``, ``"config"``)."""
    out = []
    for where, row in _rows(source, "reference"):
        if isinstance(row, Reference):
            where = row.origin or where
            row = {"id": row.id, "turn": row.turn, "reference": row.reference, "question": row.question,
                   "config": row.config}
        if not isinstance(row, Mapping):
            raise EvaluationError(f"{where}: a reference must be a mapping, got {type(row).__name__}")
        rid, turn, config = _check_key(where, row)
        text = _text(where, rid, turn, row, "reference")
        question = row.get("question")
        if question is not None and not isinstance(question, str):
            raise EvaluationError(f"{where} (id {rid!r}, turn {turn}): 'question' must be a string when given")
        out.append(Reference(rid, turn, text, question, config, where))
    return out


def references_from_records(records: Iterable[Any], config: str) -> list[Reference]:
    """One reference per assistant turn of each dialogue record (``Record`` from ``annotations``)."""
    return [
        Reference(record.id, i, turn.assistant, turn.user, config, f"{record.origin} turn {i}")
        for record in records
        for i, turn in enumerate(record.turns)
    ]


# --- matching ------------------------------------------------------------------------------------


def _examples(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_EXAMPLES])
    return shown + (f"; ... and {len(items) - _EXAMPLES} more" if len(items) > _EXAMPLES else "")


def _describe(config: str | None, rid: str, turn: int) -> str:
    return f"{config + ' ' if config else ''}id {rid!r} turn {turn}"


def match(predictions: Sequence[Prediction], references: Sequence[Reference], *, allow_missing: bool = False
          ) -> tuple[list[str], int]:
    """The prediction text for every reference, in reference order, and how many were missing.

    A prediction matches on ``(id, turn)``, and on ``config`` too when it gives one; one that matches
    no reference, or matches references of several configs, or repeats an ``(id, turn)``, is an error.
    """
    by_key: dict[tuple[str | None, str, int], Reference] = {}
    configs_of: dict[tuple[str, int], list[str | None]] = {}
    for ref in references:
        key = (ref.config, ref.id, ref.turn)
        if key in by_key:
            raise EvaluationError(f"{ref.origin}: duplicate reference for {_describe(*key)} "
                                  f"(first at {by_key[key].origin})")
        by_key[key] = ref
        configs_of.setdefault((ref.id, ref.turn), []).append(ref.config)
    # A prediction's config only disambiguates when the references carry configs.
    configs_known = any(ref.config is not None for ref in references)
    answers: dict[tuple[str | None, str, int], Prediction] = {}
    unknown = []
    for pred in predictions:
        if pred.config is not None and configs_known:
            key = (pred.config, pred.id, pred.turn)
            if key not in by_key:
                unknown.append(f"{pred.origin}: {_describe(*key)}")
                continue
        else:
            candidates = configs_of.get((pred.id, pred.turn), [])
            if not candidates:
                unknown.append(f"{pred.origin}: {_describe(None, pred.id, pred.turn)}")
                continue
            if len(candidates) > 1:
                raise EvaluationError(f"{pred.origin}: id {pred.id!r} turn {pred.turn} exists in configs "
                                      f"{', '.join(map(str, candidates))}; add a 'config' field to the predictions")
            key = (candidates[0], pred.id, pred.turn)
        if key in answers:
            raise EvaluationError(f"{pred.origin}: duplicate prediction for {_describe(*key)} "
                                  f"(first at {answers[key].origin})")
        answers[key] = pred
    if unknown:
        raise EvaluationError(f"{len(unknown)} predictions name a dialogue turn that is not in the references "
                              f"({len(references)} reference turns): {_examples(unknown)}")
    texts, missing = [], []
    for key, ref in by_key.items():
        answer = answers.get(key)
        if answer is None or not answer.prediction.strip():
            missing.append(f"{_describe(*key)} ({ref.origin})" + (f": empty at {answer.origin}" if answer else ""))
            texts.append("")
        else:
            texts.append(answer.prediction)
    if missing and not allow_missing:
        raise EvaluationError(f"{len(missing)} of {len(references)} reference turns have no prediction: "
                              f"{_examples(missing)} (pass allow_missing / --allow-missing to score them as empty)")
    return texts, len(missing)


# --- scoring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemScores:
    """One tokenised corpus scored item by item, from which any group's scores follow without rescoring.

    ``bleu`` holds pycocoevalcap's own per-item BLEU statistics (each item's reference lengths, n-gram
    guesses and matches): a group's corpus BLEU is those statistics summed over the group, exactly what
    ``Bleu(4)`` computes on the group alone. ROUGE-L is per item by definition. CIDEr's idf depends on
    the corpus, so it is computed for each corpus (the whole, or a config of it) from the kept n-gram
    counts: the references' are BLEU's (for one reference its clipping counts are its counts, in the
    same order), and the predictions' are counted once for both scorers.
    """

    references: list[str]
    predictions: list[str]
    bleu: BleuScorer
    rouge_l: np.ndarray
    prediction_counts: list[dict]

    def bleu4(self, idx: Sequence[int] | None = None) -> float:
        """Corpus BLEU-4 of the items ``idx`` (all by default), as ``Bleu(4).compute_score`` gives it."""
        group = self.bleu
        if idx is not None:
            group = BleuScorer(n=4)
            group.crefs = [self.bleu.crefs[i] for i in idx]
            group.ctest = [self.bleu.ctest[i] for i in idx]
        score, _ = group.compute_score(option="closest")  # the option Bleu.compute_score uses
        return float(score[3])


def _coco(tokens: Sequence[str]) -> dict[int, list[str]]:
    return {i: [t] for i, t in enumerate(tokens)}


def score_items(references: Sequence[str], predictions: Sequence[str], tokenizer: str = "python",
                labels: Sequence[str] | None = None) -> ItemScores:
    """Tokenise ``references`` and ``predictions`` and compute their per-item BLEU statistics and ROUGE-L.

    ``labels`` name the items in errors (a reference that tokenises to nothing, e.g. only punctuation,
    has no n-gram to score against and is refused; default: the item's index).
    """
    if len(references) != len(predictions):
        raise UsageError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise EvaluationError("nothing to score: no reference turns")
    refs = tokenize(references, tokenizer)
    empty = [labels[i] if labels is not None else f"item {i}" for i, t in enumerate(refs) if not t]
    if empty:
        raise EvaluationError(f"{len(empty)} reference turns have no word left after tokenisation (only punctuation "
                              f"or symbols), so nothing can be scored against them: {_examples(empty)}; fix or "
                              "remove these references")
    preds = tokenize(predictions, tokenizer)
    bleu = BleuScorer(n=4)
    prediction_counts = []
    for ref, pred in zip(refs, preds, strict=True):
        cooked_ref = bleu_scorer.cook_refs([ref])
        testlen, counts = bleu_scorer.precook(pred, 4, True)
        bleu.crefs.append(cooked_ref)
        bleu.ctest.append(_cook_test(testlen, counts, cooked_ref))
        prediction_counts.append(counts)  # CIDEr's cook_test is the same precook: counted once for both
    _, rouge = Rouge().compute_score(_coco(refs), _coco(preds))
    return ItemScores(refs, preds, bleu, np.asarray(rouge), prediction_counts)


def _cook_test(testlen: int, counts: dict, cooked_ref: tuple) -> dict:
    """``bleu_scorer.cook_test(pred, cooked_ref)`` (as ``BleuScorer += (pred, [ref])`` calls it) from the
    prediction's n-gram counts, which CIDEr needs too; the equality tests against ``Bleu(4)`` guard it."""
    reflen, refmaxcounts = cooked_ref
    correct = [0] * 4
    for ngram, count in counts.items():
        correct[len(ngram) - 1] += min(refmaxcounts.get(ngram, 0), count)
    return {"reflen": reflen, "testlen": testlen, "guess": [max(0, testlen - k + 1) for k in range(1, 5)],
            "correct": correct}


def _cider(items: ItemScores, idx: Sequence[int] | None = None) -> np.ndarray:
    """Per-item CIDEr of the items ``idx`` (all by default) scored as one corpus (their own idf).

    The same computation as ``Cider().compute_score`` on those items: a ``CiderScorer`` holding each
    item's one reference and its prediction, as n-gram counts.
    """
    positions = range(len(items.references)) if idx is None else idx
    scorer = cider_scorer.CiderScorer(n=4, sigma=6.0)  # Cider()'s defaults
    scorer.crefs = [[items.bleu.crefs[i][1]] for i in positions]
    scorer.ctest = [items.prediction_counts[i] for i in positions]
    _, scores = scorer.compute_score()
    return np.asarray(scores)


def _corpus_report(items: ItemScores, turns: Sequence[int], idx: Sequence[int] | None = None) -> CorpusReport:
    """Overall and per-turn scores of the corpus made of the items ``idx`` (all by default).

    CIDEr's and ROUGE-L's corpus scores are the means of their per-item scores (as pycocoevalcap's
    ``compute_score`` returns them); per-turn groups slice the corpus' per-item CIDEr, so the idf stays
    the corpus'.
    """
    positions = np.arange(len(turns)) if idx is None else np.asarray(idx)
    cider = _cider(items, idx)
    rouge = items.rouge_l[positions]
    turns_array = np.asarray(turns)[positions]
    overall = Scores(float(np.mean(cider)), items.bleu4(idx), float(np.mean(rouge)), len(positions))
    per_turn = {}
    for turn in sorted(set(turns_array.tolist())):
        where = np.flatnonzero(turns_array == turn)
        per_turn[int(turn)] = Scores(float(cider[where].mean()), items.bleu4(positions[where].tolist()),
                                     float(rouge[where].mean()), len(where))
    return CorpusReport(overall, per_turn)


def evaluate(
    predictions: PathLike | Iterable[Mapping | Prediction],
    references: PathLike | Iterable[Mapping | Reference] | None = None,
    *,
    config: str | Sequence[str] | None = None,
    split: str = "test",
    data_dir: PathLike | None = None,
    source_metadata: Mapping[str, Any] | None = None,
    tokenizer: str = "python",
    allow_missing: bool = False,
    judge: Any = None,
) -> EvaluationReport:
    """Score model answers with CIDEr, BLEU-4 and ROUGE-L, as coco-caption does.

    Args:
        predictions: JSONL path (``{"id", "turn", "prediction"}``, ``turn`` 0-based, optional ``config``),
            or an iterable of such mappings or :class:`Prediction`.
        references: JSONL path (``{"id", "turn", "reference"}``, optional ``question``, ``config``) or rows;
            or ``None`` to take the assistant turns of ``config``'s ``split`` read from ``data_dir``.
        config: one config or several (each is then also scored as its own corpus).
        source_metadata: with ``config``: the metadata options of release-shape annotations
            (``strong_labels``, ``musiccaps_csv``, ``ontology``, ``download_metadata``), as for loading.
        tokenizer: ``python`` (pure Python, no Java) or ``ptb`` (pycocoevalcap's Java PTBTokenizer).
        allow_missing: score reference turns without a prediction (or with an empty one) as empty answers
            and report how many there were, instead of refusing.
        judge: :class:`~audio_dialogues.evaluation.judge.JudgeOptions` to have a model grade every answer
            too (see :mod:`audio_dialogues.evaluation.judge`); with ``config``, the judge is told what each
            clip contains.
    """
    if tokenizer not in TOKENIZERS:
        raise UsageError(f"unknown tokenizer {tokenizer!r}; expected one of {', '.join(TOKENIZERS)}")
    contents: dict[tuple[str | None, str], str] = {}
    if references is None:
        if config is None or data_dir is None:
            raise UsageError("give references, or config and data_dir to take them from the annotations")
        from ..sources.records import records_by_split

        configs = list(dict.fromkeys([config] if isinstance(config, str) else config))
        refs = []
        for c in configs:
            for records in records_by_split(c, [split], data_dir=data_dir, **(source_metadata or {})).values():
                refs += references_from_records(records, c)
                if judge is not None:
                    from .judge import record_contents

                    contents.update({(c, rid): text for rid, text in
                                     record_contents(c, records, source_metadata or {}).items()})
    else:
        if config is not None:
            raise UsageError("give references or config (with data_dir), not both; to score some configs of "
                                  "a references file, filter it on its 'config' field")
        refs = read_references(references)
        if len({r.config is None for r in refs}) > 1:
            raise EvaluationError("references mix rows with and without 'config'; give it on all rows or none")
    preds = read_predictions(predictions, allow_empty=allow_missing)
    texts, missing = match(preds, refs, allow_missing=allow_missing)
    labels = [f"{ref.origin} ({_describe(ref.config, ref.id, ref.turn)})" for ref in refs]
    items = score_items([r.reference for r in refs], texts, tokenizer, labels)
    turns = [r.turn for r in refs]
    report = _corpus_report(items, turns)
    per_config = {}
    configs_scored = list(dict.fromkeys(r.config for r in refs))
    if len(configs_scored) > 1:
        for scored in configs_scored:
            per_config[str(scored)] = _corpus_report(items, turns,
                                                     [i for i, r in enumerate(refs) if r.config == scored])
    judged = None
    if judge is not None:
        from .judge import items_for, run_judge

        judged = run_judge(items_for(refs, texts, contents), judge)
    return EvaluationReport(report.overall, report.per_turn, per_config, tokenizer, missing, judged)


def write_report(report: EvaluationReport, *, json_path: PathLike | None = None, markdown_path: PathLike | None = None
                 ) -> None:
    """Write the report as JSON and/or markdown; each file appears complete or not at all."""
    for path, text in ((json_path, lambda: json.dumps(report.to_dict(), indent=2) + "\n"),
                       (markdown_path, report.to_markdown)):
        if path is None:
            continue
        with atomic_write(path) as f:
            f.write(text())
