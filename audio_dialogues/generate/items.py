"""Items: what one request asks the model about, built from the source metadata.

- ``audioset``: one item per strong-labelled clip; its events are grouped by class (named through the
  ontology) into one events line, optionally with a short acoustic descriptor per class;
- ``music``: one item per MusicCaps row, its caption (and aspects, for the record's meta);
- ``comparison``: groups of 2-4 distinct clips drawn from the audioset items of the same split (optionally
  mixed with music items), deterministic for a given seed.

Splits follow the sources: AudioSet's eval strong labels and MusicCaps' ``is_audioset_eval`` rows are test.
"""

from __future__ import annotations

import functools
import random
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..sources.annotations import PAPER_SIZES, SPLITS
from ..sources.clips import Clip
from ..sources.metadata import MusicCapsEntry, SoundEvent

GROUP_SIZES = (2, 3, 4)


@dataclass(frozen=True, slots=True)
class Item:
    """One unit of generation: the clips it is about, the text the prompt shows and the record's meta."""

    key: str
    config: str
    split: str
    clips: tuple[Clip, ...]
    #: What the prompt shows: an events line, a music description, or numbered clips.
    text: str
    #: What the similarity filter compares the generated answers with (``text`` without time spans).
    description: str
    meta: dict = field(default_factory=dict, hash=False, compare=False)
    #: Sound classes the text names (for descriptor requests).
    labels: tuple[str, ...] = ()
    #: ``(class name, start_s, end_s)`` of an audioset item, turned into ``meta.sound_events`` on output only.
    events: tuple[tuple[str, float, float], ...] = field(default=(), hash=False, compare=False)

    def record_meta(self) -> dict:
        """The ``meta`` of this item's output record (the builder reads sound_events, caption, aspects)."""
        if not self.events:
            return dict(self.meta)
        return {"sound_events": [{"label": n, "start_s": s, "end_s": e} for n, s, e in self.events], **self.meta}


@functools.lru_cache(maxsize=65536)
def format_seconds(value: float) -> str:
    """``1`` -> ``1.0``, ``2.25`` -> ``2.25``, ``0.1234`` -> ``0.123``: one to three decimals.

    Cached: strong labels use a few thousand distinct times (ms within 10 s) for a million events.
    """
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def events_line(
    events: Iterable[tuple[str, float, float]], descriptors: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """``Sound of <class> (<descriptor>): [0.0s-1.5s], [4.0s-10.0s]; Sound of ...``, classes by first onset.

    Returns the line and the same without time spans (the description the similarity filter uses).
    """
    by_class: dict[str, list[tuple[float, float]]] = {}
    for name, start, end in sorted(events, key=lambda e: (e[1], e[2], e[0])):
        by_class.setdefault(name, []).append((start, end))
    parts, heads = [], []
    for name, intervals in by_class.items():
        descriptor = descriptors.get(name) if descriptors else None
        head = f"Sound of {name} ({descriptor})" if descriptor else f"Sound of {name}"
        spans = ", ".join(f"[{format_seconds(s)}s-{format_seconds(e)}s]" for s, e in intervals)
        parts.append(f"{head}: {spans}")
        heads.append(head)
    return "; ".join(parts), "; ".join(heads)


def audioset_items(
    segments: Iterable[tuple[Clip, Sequence[SoundEvent]]],
    split: str,
    label_names: Mapping[str, str],
    descriptors: Mapping[str, str] | None = None,
) -> list[Item]:
    """One item per strong-labelled clip; labels without an ontology name keep their machine id."""
    items = []
    for clip, events in segments:
        named = tuple((label_names.get(e.label, e.label), e.start_s, e.end_s) for e in events)
        if not named:
            continue
        text, description = events_line(named, descriptors)
        labels = tuple(dict.fromkeys(n for n, _, _ in named))
        items.append(Item(clip.key, "audioset", split, (clip,), text, description, {}, labels, named))
    return items


def music_text(caption: str) -> str:
    return f"Music description: {caption.strip()}"


#: Why a MusicCaps row is not an item; the report counts them per split.
EMPTY_CAPTION = "empty caption (nothing to describe)"
REPEATED_ROW = "duplicate row (the same clip listed again; built once)"


def music_split(entry: MusicCapsEntry) -> str:
    """MusicCaps' own split: its ``is_audioset_eval`` rows are test."""
    return "test" if entry.is_audioset_eval else "train"


def music_items(entries: Iterable[MusicCapsEntry], split: str | None = None) -> list[Item]:
    """One item per MusicCaps row with a caption; ``split`` None takes each row's own (:func:`music_split`)."""
    items = []
    for entry in entries:
        row_split = split or music_split(entry)
        if not entry.caption.strip():
            continue
        meta = {"caption": entry.caption, "aspects": list(entry.aspects)}
        caption = entry.caption.strip()
        items.append(Item(entry.clip.key, "music", row_split, (entry.clip,), music_text(caption), caption, meta))
    return items


def music_rows_not_built(entries: Iterable[MusicCapsEntry], repeats: Iterable[MusicCapsEntry]
                         ) -> dict[str, Counter[str]]:
    """Per split, the MusicCaps rows that became no item, by reason (see :func:`music_items`)."""
    out: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    for entry in entries:
        if not entry.caption.strip():
            out[music_split(entry)][EMPTY_CAPTION] += 1
    for entry in repeats:
        out[music_split(entry)][REPEATED_ROW] += 1
    return out


def comparison_items(
    audioset: Sequence[Item],
    split: str,
    count: int,
    *,
    seed: int = 0,
    music: Sequence[Item] = (),
    music_fraction: float = 0.0,
) -> list[Item]:
    """``count`` groups of 2-4 clips, none twice in a group and no group twice, reproducible from ``seed``.

    Each member comes from ``music`` with probability ``music_fraction`` (when there are music items),
    else from ``audioset``. Fewer groups are returned when the pools cannot make ``count`` distinct ones.
    """
    rng = random.Random(seed * 1_000_003 + zlib.crc32(split.encode()))
    pools = [list(audioset), list(music)]
    total = len(pools[0]) + len(pools[1])
    if total < 2:
        return []
    groups: list[Item] = []
    seen: set[frozenset[str]] = set()
    misses = 0
    while len(groups) < count and misses < 1000:
        size = min(rng.choice(GROUP_SIZES), total)
        members: list[Item] = []
        chosen: set[str] = set()
        while len(members) < size:
            pool = pools[1] if pools[1] and (not pools[0] or rng.random() < music_fraction) else pools[0]
            candidate = pool[rng.randrange(len(pool))]
            if candidate.clips[0].ytid in chosen:
                if len(chosen) >= len({i.clips[0].ytid for i in pool}):
                    break
                continue
            chosen.add(candidate.clips[0].ytid)
            members.append(candidate)
        signature = frozenset(m.key for m in members)
        if len(members) < 2 or signature in seen:
            misses += 1
            continue
        misses = 0
        seen.add(signature)
        text = "\n".join(f"Audio {i}: {m.text}" for i, m in enumerate(members, start=1))
        meta = {"members": [{"config": m.config, "key": m.key} for m in members]}
        description = " | ".join(m.description for m in members)
        key = "+".join(m.key for m in members)
        labels = tuple(dict.fromkeys(label for m in members for label in m.labels))
        clips = tuple(m.clips[0] for m in members)
        groups.append(Item(key, "comparison", split, clips, text, description, meta, labels))
    return groups


def comparison_count(split: str, pool: int, limit: int | None, groups: Mapping[str, int] | None = None) -> int:
    """Groups of a split: as given; else the paper's size, or one per clip of a smaller pool; capped by ``limit``.

    The paper's sizes come from the whole strong-label splits (each clip in about one to three groups). Drawn
    from a few hundred clips, they would put each clip in hundreds of groups: a bill for near-duplicates.
    """
    given = (groups or {}).get(split)
    count = given if given is not None else min(PAPER_SIZES["comparison"][split], pool)
    return count if limit is None else min(count, limit)
