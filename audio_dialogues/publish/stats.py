"""Statistics measured on the rows of one config and split, for the dataset card and its plots.

Each figure is computed from the rows exactly as they are pushed, so the card never quotes a number
that the data does not hold; the paper's figures sit beside them in the card, taken from
:data:`audio_dialogues.dataset.cards.CARDS`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

#: How many sound classes / aspects and question types the card lists.
TOP_N = 10
_FIRST_WORD_RE = r"(?P<w>[A-Za-z0-9']+)"
#: The question type of a user turn without any word.
NO_WORD = "(none)"


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
    #: The shares of the classes the paper reports a figure for, each counting its ontology sub-classes.
    named_classes: list[Share] = field(default_factory=list)
    #: Whether sub-classes were folded in (an ontology was at hand).
    named_folded: bool = False

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


def _counts(values: pa.Array | pa.ChunkedArray) -> collections.Counter:
    counted = pc.value_counts(values)
    return collections.Counter(dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(),
                                        strict=True)))


def _shares(counter: collections.Counter, total: int, top_n: int) -> list[Share]:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
    return [Share(name, n, n / total if total else 0.0) for name, n in ranked]


def _per_row_once(lists: pa.ChunkedArray, values: pa.Array) -> collections.Counter:
    """How many rows hold each value of the list column ``lists`` (``values`` is its flattened content)."""
    pairs = pa.table({"row": pc.list_parent_indices(lists), "value": values}).group_by(["row", "value"]).aggregate([])
    return _counts(pairs.column("value").drop_null())


def _classes(config: str, table: pa.Table) -> collections.Counter:
    """Sound event labels (audioset) or aspects (music), each counted once per row; none for comparison."""
    if config == "audioset":
        events = table.column("sound_events")
        return _per_row_once(events, pc.struct_field(pc.list_flatten(events), "label"))
    if config == "music":
        aspects = table.column("aspects")
        values = pc.utf8_lower(pc.utf8_trim_whitespace(pc.list_flatten(aspects)))
        counts = _per_row_once(aspects, values)
        counts.pop("", None)
        return counts
    return collections.Counter()


def ontology_members(children: Mapping[str, Sequence[str]], names: Iterable[str]) -> dict[str, set[str]]:
    """Each of ``names`` with all its sub-classes (``children``: class name -> sub-class names, from the
    AudioSet ontology), as the paper counts them. Without an ontology each name stands for itself."""
    members = {}
    for name in names:
        found, todo = {name}, list(children.get(name, ()))
        while todo:
            child = todo.pop()
            if child not in found:
                found.add(child)
                todo.extend(children.get(child, ()))
        members[name] = found
    return members


def _rows_holding(table: pa.Table, config: str, members: set[str]) -> int:
    if config != "audioset":
        return 0
    events = table.column("sound_events")
    labels = pc.struct_field(pc.list_flatten(events), "label")
    rows = pc.filter(pc.list_parent_indices(events), pc.is_in(labels, pa.array(sorted(members), pa.string())))
    return len(pc.unique(rows))


def split_stats(config: str, split: str, table: pa.Table, *, named_classes: dict[str, set[str]] | None = None,
                top_n: int = TOP_N) -> SplitStats:
    """Measure one split from its rows as published (``turns``, ``clip``/``clips`` and the metadata columns).

    Words are whitespace-separated; a question's type is its first word, lower-cased.
    ``named_classes`` (the classes the paper gives a share for, each with the labels that count for it, see
    :func:`ontology_members`) are measured whether or not they make the top.
    Computed with Arrow kernels where they are faster than Python.
    """
    rows = table.num_rows
    turns = table.column("turns")
    flat = pc.list_flatten(turns)
    user, assistant = pc.struct_field(flat, "user"), pc.struct_field(flat, "assistant")
    n_turns = len(flat)
    first = pc.struct_field(pc.extract_regex(user, _FIRST_WORD_RE), "w")
    questions = _counts(pc.fill_null(pc.utf8_lower(first), NO_WORD))
    classes = _classes(config, table)
    clips = pc.list_flatten(table.column("clips")) if config == "comparison" else table.column("clip")
    clip_table = pa.table({k: pc.struct_field(clips, k) for k in ("ytid", "start_s", "end_s")})
    named = [(name, _rows_holding(table, config, members)) for name, members in (named_classes or {}).items()]
    return SplitStats(
        config=config,
        split=split,
        dialogues=rows,
        turns=n_turns,
        turns_per_dialogue=dict(sorted(_counts(pc.list_value_length(turns)).items())),
        words_per_turn_user=_words(user) / n_turns if n_turns else 0.0,
        words_per_turn_assistant=_words(assistant) / n_turns if n_turns else 0.0,
        distinct_clips=clip_table.group_by(["ytid", "start_s", "end_s"]).aggregate([]).num_rows,
        top_classes=_shares(classes, rows, top_n),
        class_kind="aspect" if config == "music" else "sound class",
        question_types=_shares(questions, n_turns, top_n),
        named_classes=[Share(name, n, n / rows if rows else 0.0) for name, n in named],
        named_folded=any(len(m) > 1 for m in (named_classes or {}).values()),
    )


def _words(texts: pa.Array | pa.ChunkedArray) -> int:
    """Whitespace-separated words, as ``str.split`` counts them (faster here than Arrow's regex kernels)."""
    return sum(len(text.split()) for text in texts.to_pylist())
