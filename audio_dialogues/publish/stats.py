"""Statistics measured on the records of one config and split, for the dataset card and its plots.

Each figure is computed from the records exactly as they are pushed, so the card never quotes a number
that the data does not hold; the paper's figures sit beside them in the card, taken from
:data:`audio_dialogues.cards.CARDS`.
"""

from __future__ import annotations

import collections
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from ..sources.annotations import Record

#: How many sound classes / aspects and question types the card lists.
TOP_N = 10
_FIRST_WORD = re.compile(r"[A-Za-z0-9']+")


@dataclass
class Share:
    """How many records (or user turns) hold ``name``, and which fraction of all of them that is."""

    name: str
    count: int
    share: float

    @property
    def percent(self) -> str:
        return f"{100 * self.share:.2f}%"


@dataclass
class SplitStats:
    """Measured figures of one split.

    ``top_classes`` counts each sound class (AudioSet configs) or aspect (music) once per record, so a
    share reads as "in x% of the samples", which is how the paper reports its class bias.
    """

    config: str
    split: str
    dialogues: int
    turns: int
    turns_per_dialogue: dict[int, int]
    words_per_turn_user: float
    words_per_turn_assistant: float
    distinct_clips: int
    top_classes: list[Share] = field(default_factory=list)
    #: What ``top_classes`` counts: ``sound class`` or ``aspect``.
    class_kind: str = "sound class"
    question_types: list[Share] = field(default_factory=list)
    #: The shares of the classes the paper reports a figure for (counted the same way as ``top_classes``).
    named_classes: list[Share] = field(default_factory=list)

    @property
    def turns_mean(self) -> float:
        return self.turns / self.dialogues if self.dialogues else 0.0

    @property
    def turns_range(self) -> str:
        if not self.turns_per_dialogue:
            return "-"
        low, high = min(self.turns_per_dialogue), max(self.turns_per_dialogue)
        return str(low) if low == high else f"{low}-{high}"

    def to_dict(self) -> dict:
        return asdict(self)


def _words(text: str) -> int:
    return len(text.split())


def question_type(question: str) -> str:
    """A question's type as its first word, lower-cased ("what", "how", "is", ...); ``(none)`` when empty."""
    match = _FIRST_WORD.search(question)
    return match.group(0).lower() if match else "(none)"


def _shares(counter: collections.Counter, total: int, top_n: int) -> list[Share]:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
    return [Share(name, n, n / total if total else 0.0) for name, n in ranked]


def record_classes(config: str, record: Record) -> set[str]:
    """The classes a record counts once for: its sound event labels, or its music aspects."""
    if config == "music":
        return {a.strip().lower() for a in record.meta.get("aspects", []) if a.strip()}
    return {e["label"] for e in record.meta.get("sound_events", [])}


def split_stats(
    config: str, split: str, records: Sequence[Record], *, named_classes: Iterable[str] = (), top_n: int = TOP_N
) -> SplitStats:
    """Measure one split: dialogue and turn counts, words per turn, top classes and question types.

    ``named_classes`` (the classes the paper gives a share for) are measured whether or not they make the top.
    """
    turns_hist: collections.Counter[int] = collections.Counter()
    user_words: list[int] = []
    assistant_words: list[int] = []
    classes: collections.Counter[str] = collections.Counter()
    questions: collections.Counter[str] = collections.Counter()
    clips = set()
    for record in records:
        turns_hist[len(record.turns)] += 1
        for turn in record.turns:
            user_words.append(_words(turn.user))
            assistant_words.append(_words(turn.assistant))
            questions[question_type(turn.user)] += 1
        classes.update(record_classes(config, record))
        clips.update(c.key for c in record.clips)
    return SplitStats(
        config=config,
        split=split,
        dialogues=len(records),
        turns=len(user_words),
        turns_per_dialogue=dict(sorted(turns_hist.items())),
        words_per_turn_user=statistics.fmean(user_words) if user_words else 0.0,
        words_per_turn_assistant=statistics.fmean(assistant_words) if assistant_words else 0.0,
        distinct_clips=len(clips),
        top_classes=_shares(classes, len(records), top_n),
        class_kind="aspect" if config == "music" else "sound class",
        question_types=_shares(questions, len(user_words), top_n),
        named_classes=[Share(n, classes[n], classes[n] / len(records) if records else 0.0) for n in named_classes],
    )
