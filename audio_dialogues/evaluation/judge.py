"""A model judge for ``evaluate``: each answer graded against the reference *and* what the clip contains.

N-gram metrics reward word overlap with one reference; an open answer about sounds can be right in
other words, or fluent and wrong about the recording. The judge (any OpenAI-compatible chat model, text
only) is told what the clip contains, which this dataset knows: the AudioSet strong-label events with
their times, the MusicCaps caption and aspects, and for ``comparison`` each clip's (from the source
metadata given). It sees the conversation so far, the question and two answers, the model's and the
reference, and grades each from 1 to 10.

Each item is asked twice, the model's answer first and then the reference first, and each answer's two
grades are averaged (AIR-Bench's chat judge does this to cancel the judge's preference for a position).
An item the judge does not grade in both orders (no parsable grades, or a request that failed after its
retries) is counted as unscored and left out of the means; a turn without a prediction is not judged.

Requests go through :class:`audio_dialogues.llm.judge.Judge`, as ``generate --judge-model``'s do: journaled
(``<predictions>.judge.jsonl`` by default) so a re-run pays for nothing twice, with the same retries, rate
limits and cost accounting as ``generate``.

The report names the judge's model and the SHA-256 of its instruction and prompt template.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..llm.judge import KIND, Judge, JudgeEndpoint, Question, Scale

#: The judge's instruction, in this project's words.
INSTRUCTION = (
    "You grade answers to questions about audio recordings. You cannot hear the recording; instead you are told "
    "what it contains: sound events that people annotated, with their times in seconds from the start of the "
    "clip, or a musician's description of a music clip. You are shown the conversation so far, the last "
    "question, and two answers to it.\n"
    "Grade each answer on its own, from 1 to 10. Give 10 to an answer that is right about what the recording "
    "contains and answers the question fully; give 1 to one that contradicts the recording or does not answer. "
    "An answer that claims sounds, instruments or times the recording does not hold loses points however well "
    "it reads; an answer in other words than the other one loses nothing for that. Do not favour an answer "
    "because it comes first or because it is longer.\n"
    'Reply with only a JSON object: {"answer_1": <grade>, "answer_2": <grade>}.'
)
TEMPLATE = ("## What the clip contains\n{content}\n\n## The conversation so far\n{history}\n\n## Question\n"
            "{question}\n\n## Answer 1\n{one}\n\n## Answer 2\n{two}\n")
UNKNOWN_CONTENT = "Not known: grade the answers against the question and each other."
PROMPT_SHA256 = hashlib.sha256(f"{INSTRUCTION}\0{TEMPLATE}".encode()).hexdigest()
#: The orders each item is asked in: the model's answer first, then the reference first.
ORDERS = ("answer_first", "reference_first")


@dataclass(kw_only=True)
class JudgeOptions(JudgeEndpoint):
    """The judge's endpoint (:class:`~audio_dialogues.llm.judge.JudgeEndpoint`) and the journal of its answers."""

    #: The journal of the judge's answers (``evaluate`` defaults it to ``<predictions>.judge.jsonl``).
    journal: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.journal is None:
            raise UsageError("the judge needs a journal file for its answers (--judge-journal)")
        self.journal = Path(self.journal)


@dataclass
class Item:
    """One answer to judge: its turn, the reference, the question and the conversation before it."""

    config: str | None
    id: str
    turn: int
    question: str
    reference: str
    answer: str
    history: list[tuple[str, str]] = field(default_factory=list)
    content: str | None = None


def describe_content(config: str | None, meta: Mapping[str, Any]) -> str | None:
    """What a clip contains, in words the judge reads, from a record's (or a clip's) source metadata."""
    lines = []
    events = meta.get("sound_events") or []
    if events:
        lines.append("Sound events (start-end, seconds into the clip): " + "; ".join(
            f"{e.get('label')} {e.get('start_s', 0):g}-{e.get('end_s', 0):g}" for e in events))
    if meta.get("caption"):
        lines.append(f"Music description: {meta['caption']}")
    if meta.get("aspects"):
        lines.append(f"Aspects: {', '.join(meta['aspects'])}")
    return "\n".join(lines) or None


def record_contents(config: str, records: Sequence[Any], source_metadata: Mapping[str, Any]) -> dict[str, str]:
    """Each record's clip content by dialogue id: its own metadata, or for ``comparison`` each clip's, looked
    up in the strong labels and MusicCaps CSV given."""
    out: dict[str, str] = {}
    metadata = None
    if config == "comparison":
        from ..sources.metadata import metadata_sources, open_source_metadata

        given = {k: v for k, v in source_metadata.items() if k != "download_metadata"}
        sources = {**metadata_sources("audioset", **{k: v for k, v in given.items() if k != "musiccaps_csv"},
                                      download_metadata=bool(source_metadata.get("download_metadata"))),
                   **metadata_sources("music", musiccaps_csv=given.get("musiccaps_csv"))}
        metadata = open_source_metadata(sources) if sources else None
    for record in records:
        if metadata is None:
            content = describe_content(config, record.meta)
        else:
            clips = []
            for k, clip in enumerate(record.clips, start=1):
                entry = metadata.music_entry(clip.ytid)
                meta = ({"caption": entry.caption, "aspects": list(entry.aspects)} if entry is not None
                        else {"sound_events": metadata.sound_events(clip)})
                clips.append(f"Clip {k}: " + (describe_content(config, meta) or "not known"))
            content = "\n".join(clips) if any(not c.endswith("not known") for c in clips) else None
        if content:
            out[record.id] = content
    return out


def prompt(item: Item, order: str) -> list[dict[str, str]]:
    one, two = (item.answer, item.reference) if order == "answer_first" else (item.reference, item.answer)
    history = "\n".join(f"User: {u}\nAssistant: {a}" for u, a in item.history) or "(none: this is the first question)"
    text = TEMPLATE.format(content=item.content or UNKNOWN_CONTENT, history=history, question=item.question,
                           one=one, two=two)
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text}]


#: Each answer's grade, from 1 to 10, named by its position in the prompt.
GRADES = Scale(("answer_1", "answer_2"), 1.0, 10.0)


@dataclass
class Mean:
    score: float
    reference_score: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "reference_score": round(self.reference_score, 4), "n": self.n}


@dataclass
class JudgeReport:
    model: str
    base_url: str
    overall: Mean | None
    per_turn: dict[int, Mean]
    per_config: dict[str, dict[str, Any]]
    #: Answers the judge could not grade in both orders, and why.
    unscored: int
    unscored_reasons: dict[str, int]
    #: Reference turns without an answer to judge (missing or empty predictions).
    no_answer: int
    #: Items whose clip content the judge was told.
    grounded: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    journal: str
    prompt_sha256: str = PROMPT_SHA256
    interrupted: bool = False
    pending: int = 0
    #: Requests this run sent (retries included); 0 when every answer was in the journal.
    requests_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, "prompt_sha256": self.prompt_sha256,
                "scale": "1-10, each answer graded with the reference in both positions and averaged",
                "overall": self.overall.to_dict() if self.overall else None,
                "per_turn": {str(t): m.to_dict() for t, m in self.per_turn.items()},
                "per_config": self.per_config, "unscored": self.unscored, "unscored_reasons": self.unscored_reasons,
                "no_answer": self.no_answer, "grounded": self.grounded, "pending": self.pending,
                "requests_sent": self.requests_sent,
                "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
                "cost_usd": self.cost_usd, "journal": self.journal}

    def markdown(self) -> list[str]:
        lines = ["", f"### Judge: `{self.model}` (prompt sha256 `{self.prompt_sha256[:16]}`)", "",
                 "| group | n | judge (1-10) | reference, same judge |", "|---|---:|---:|---:|"]
        rows: list[tuple[str, Mean | None]] = [("overall", self.overall)]
        rows += [(f"turn {t}", m) for t, m in self.per_turn.items()]
        for config, groups in self.per_config.items():
            rows.append((config, _mean_from(groups["overall"])))
        for name, m in rows:
            if m is not None:
                lines.append(f"| {name} | {m.n} | {m.score:.3f} | {m.reference_score:.3f} |")
        lines.append(f"{self.grounded} answers graded knowing the clip's content; {self.unscored} the judge could "
                     f"not grade; {self.no_answer} turns without an answer were not judged. Tokens "
                     f"{self.prompt_tokens} + {self.completion_tokens}, ${self.cost_usd:.4f}.")
        if self.pending:
            lines.append(f"{self.pending} judge requests are still to ask: run the same command again to resume.")
        return lines


def _mean_from(d: Mapping[str, Any] | None) -> Mean | None:
    return Mean(d["score"], d["reference_score"], d["n"]) if d else None


def _mean(graded: Sequence[tuple[float, float]]) -> Mean | None:
    if not graded:
        return None
    return Mean(sum(g[0] for g in graded) / len(graded), sum(g[1] for g in graded) / len(graded), len(graded))


def _groups(items: Sequence[Item], grades: Sequence[tuple[float, float] | None]) -> tuple[Mean | None,
                                                                                        dict[int, Mean]]:
    per_turn: dict[int, list[tuple[float, float]]] = {}
    for item, g in zip(items, grades, strict=True):
        if g is not None:
            per_turn.setdefault(item.turn, []).append(g)
    overall = _mean([g for g in grades if g is not None])
    return overall, {t: m for t in sorted(per_turn) if (m := _mean(per_turn[t])) is not None}


def run_judge(items: Sequence[Item], options: JudgeOptions, log: Callable[[str], None] | None = None) -> JudgeReport:
    """Grade ``items`` (answers present) in both orders; the means per config, per turn and overall."""
    from ..llm.journal import Journal, OutputLock

    journal_path = Path(options.journal or "")
    judged = [item for item in items if item.answer.strip()]
    questions = {(i, order): Question(f"{KIND}:{item.config or ''}:{item.id}:{item.turn}:{order}",
                                      prompt(item, order),
                                      {"config": item.config, "id": item.id, "turn": item.turn, "order": order})
                 for i, item in enumerate(judged) for order in ORDERS}
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(journal_path.parent, "evaluate", "--judge-journal", name=f".{journal_path.name}.lock"), \
            Journal(journal_path) as journal:
        judge = Judge(options, GRADES, journal, log)
        asked = judge.ask(list(questions.values()))
        grades: list[tuple[float, float] | None] = []
        reasons: Counter[str] = Counter()
        pending = 0
        for i in range(len(judged)):
            pair = [judge.scores(questions[i, order]) for order in ORDERS]
            unanswered = [order for order in ORDERS if judge.answer(questions[i, order]) is None]
            pending += len(unanswered)
            first, second = pair
            if first is None or second is None:
                reasons["request failed or not asked" if unanswered else "no grades in the reply"] += 1
                grades.append(None)
                continue
            # answer_first: (answer, reference); reference_first: (reference, answer)
            grades.append(((first["answer_1"] + second["answer_2"]) / 2, (first["answer_2"] + second["answer_1"]) / 2))
        usage = judge.usage(list(questions.values()))
    overall, per_turn = _groups(judged, grades)
    per_config = {}
    configs = list(dict.fromkeys(item.config for item in judged))
    if len(configs) > 1:
        for config in configs:
            idx = [i for i, item in enumerate(judged) if item.config == config]
            c_overall, c_turns = _groups([judged[i] for i in idx], [grades[i] for i in idx])
            per_config[str(config)] = {"overall": c_overall.to_dict() if c_overall else None,
                                       "per_turn": {str(t): m.to_dict() for t, m in c_turns.items()}}
    if asked.failures:
        judge.log("judge: " + "; ".join(f"{n} requests failed ({reason})" for reason, n in asked.failures.items()))
    return JudgeReport(options.model or "", options.base_url or "", overall, per_turn, per_config,
                       sum(reasons.values()), dict(reasons), len(items) - len(judged),
                       sum(1 for item in judged if item.content), usage.prompt_tokens, usage.completion_tokens,
                       judge.cost(usage), str(journal_path),
                       interrupted=asked.interrupted, pending=pending, requests_sent=asked.sent)


def items_for(references: Sequence[Any], texts: Sequence[str], contents: Mapping[tuple[str | None, str], str]
              ) -> list[Item]:
    """One item per reference turn, with the gold turns before it as history (references of one dialogue
    are its turns), the answer matched to it and the clip's content when known."""
    by_dialogue: dict[tuple[str | None, str], dict[int, Any]] = {}
    for ref in references:
        by_dialogue.setdefault((ref.config, ref.id), {})[ref.turn] = ref
    items = []
    for ref, text in zip(references, texts, strict=True):
        turns = by_dialogue[ref.config, ref.id]
        history = [(turns[t].question or "", turns[t].reference) for t in range(ref.turn) if t in turns]
        items.append(Item(ref.config, ref.id, ref.turn, ref.question or "", ref.reference, text, history,
                          contents.get((ref.config, ref.id))))
    return items

