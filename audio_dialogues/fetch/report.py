"""What a fetch run did: one :class:`ClipOutcome` per clip, gathered in a :class:`FetchReport`."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..sources.clips import Clip
from . import journal

#: Outcome statuses of one clip in one run.
OK = journal.OK
SKIPPED = "skipped"  # already cached and verified before this run looked at it
PERMANENT = journal.PERMANENT
TRANSIENT = journal.TRANSIENT
PENDING = journal.PENDING  # not attempted (the run was interrupted)


class FetchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fetch_clips`; carries the report of what was finished before it."""

    def __init__(self, report: FetchReport) -> None:
        super().__init__("fetch interrupted")
        self.report = report



@dataclass(frozen=True)
class ClipOutcome:
    """What happened to one clip in one run."""

    clip: Clip
    status: str
    reason: str = ""
    message: str = ""
    attempts: int = 0
    #: Where the audio is: the user's own copy (``reason == "local"``) or the cached clip. Kept as given
    #: (often a plain string): a cached re-run makes one outcome per clip, 50,000 at a time.
    location: str | os.PathLike | None = None
    short_by_s: float = 0.0

    @property
    def path(self) -> Path | None:
        """The audio file, if the clip has one."""
        return None if self.location is None else Path(self.location)

    def describe_failure(self) -> str:
        """Why the clip has no audio after this run, in a few words ("" if it has)."""
        if self.status == PERMANENT:
            return f"unavailable ({self.reason})"
        if self.status == TRANSIENT:
            return f"download failed ({self.reason}; transient: run again later)"
        if self.status == PENDING:
            return "download not attempted (interrupted)"
        return ""


@dataclass
class FetchReport:
    """Outcomes of a :func:`fetch_clips` run, one per distinct clip of the (shard of the) input."""

    outcomes: list[ClipOutcome] = field(default_factory=list)
    cache_dir: Path | None = None
    elapsed_s: float = 0.0
    ffmpeg: str = ""
    interrupted: bool = False
    #: Clips of other shards, not looked at by this run.
    other_shards: int = 0
    #: Lines of the journals read by this run (read only when some clip was not cached), bad ones included.
    journal_stats: journal.ReadStats | None = None

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> int:
        return self.count(OK)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    @property
    def permanent(self) -> int:
        return self.count(PERMANENT)

    @property
    def transient(self) -> int:
        return self.count(TRANSIENT)

    @property
    def pending(self) -> int:
        return self.count(PENDING)

    @property
    def complete(self) -> bool:
        """Every clip is cached or permanently unavailable: nothing a re-run could still get."""
        return self.transient == 0 and self.pending == 0

    @property
    def exit_code(self) -> int:
        """0 when complete, 1 when transient failures (or unattempted clips) remain."""
        return 0 if self.complete else 1

    def by_reason(self) -> Counter:
        return Counter((o.status, o.reason) for o in self.outcomes if o.status in (PERMANENT, TRANSIENT))

    def summary(self) -> str:
        local = sum(1 for o in self.outcomes if o.status == SKIPPED and o.reason == "local")
        parts = [f"{self.ok} fetched", f"{self.skipped - local} already cached"]
        if local:
            parts.append(f"{local} in your audio folders")
        parts += [f"{self.permanent} unavailable", f"{self.transient} failed (transient)"]
        if self.pending:
            parts.append(f"{self.pending} not attempted")
        lines = [", ".join(parts) + f" in {self.elapsed_s:.1f} s"]
        for (status, reason), n in sorted(self.by_reason().items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {status:<10} {reason:<20} {n}")
        short = [o for o in self.outcomes if o.status == OK and o.short_by_s > 0]
        if short:
            lines.append(f"  {len(short)} clips are shorter than asked because their source video ends early")
        if self.journal_stats is not None and self.journal_stats.bad_lines:
            lines.append(self.journal_stats.describe())
        return "\n".join(lines)
