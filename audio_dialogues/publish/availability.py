"""Which clips of a config have audio: in local folders, in the clip cache, or why not (fetch journal)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..dataset.local_audio import AudioResolver
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
    for key, clip in unique.items():
        if resolver.index.find(clip) is not None:
            local += 1
        elif resolver.resolve(clip) is not None:
            cached += 1
        else:
            continue
        found.add(key)
    state = journal.load(resolver.cache_dir) if journal_files else journal.merge([])
    summary = journal.summarize(state, unique.values(), lambda c: c.key in found)
    missing = {(status, reason): n for (status, reason), n in summary.by_reason.items() if status != journal.OK}
    return Availability(len(unique), local, cached, missing, len(journal_files))
