"""Which clips of a config have audio: in local folders, in the clip cache, or why not (fetch journal)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..dataset.local_audio import AudioResolver, UnusableAudioError
from ..fetch import journal
from ..sources.clips import Clip


@dataclass
class Availability:
    """Distinct clips, where the present ones are, and the journal's status and reason for the others."""

    clips: int
    local: int
    cached: int
    #: ``(status, reason) -> clips`` for clips without audio (``pending`` when no journal mentions them).
    missing: dict[tuple[str, str], int] = field(default_factory=dict)
    journals: int = 0

    @property
    def present(self) -> int:
        return self.local + self.cached

    @property
    def share(self) -> float:
        return self.present / self.clips if self.clips else 0.0


def clip_availability(clips: Iterable[Clip], resolver: AudioResolver) -> Availability | None:
    """Availability of ``clips``; None when neither local audio folders nor a fetch journal are known."""
    journal_files = journal.journal_files(resolver.cache_dir) if resolver.cache_dir is not None else []
    if not resolver.index.folders and not journal_files:
        return None
    unique = {c.key: c for c in clips}
    local = cached = 0
    found: set[str] = set()
    unusable: Counter[str] = Counter()
    for key, clip in unique.items():
        try:
            path = resolver.resolve(clip)
        except UnusableAudioError as e:
            unusable[e.reason] += 1
            found.add(key)  # not missing from the journal's point of view: counted as unusable below
            continue
        if path is None:
            continue
        if resolver.index.find(clip) is not None:
            local += 1
        else:
            cached += 1
        found.add(key)
    state = journal.load(resolver.cache_dir) if journal_files else journal.merge([])
    summary = journal.summarize(state, unique.values(), lambda c: c.key in found)
    missing = {(status, reason): n for (status, reason), n in summary.by_reason.items() if status != journal.OK}
    missing.update({("unusable", reason): n for reason, n in unusable.items()})
    return Availability(len(unique), local, cached, missing, len(journal_files))
