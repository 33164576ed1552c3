"""How many clips have audio, how many are gone for good and why, how many are still to try: is the run healthy?

One count for everything that reports availability: ``audio-dialogues status`` (per config and split, and per
shard of a sharded run) and the card a push writes. A clip is *present* when it is found as ``prepare`` finds
audio (the user's folders, then the clip cache); otherwise the merged fetch journal says why not.

The shares present are compared with what others measured fetching the same kind of clips from YouTube
(:data:`REFERENCES`), and the failures that mean "YouTube is blocking this machine" (bot checks, HTTP 429,
403) or "this yt-dlp gets no formats" are called out, since they look like missing clips but are neither
permanent nor the clips' fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sources.clips import Clip
from . import journal
from .sharding import shard_index_of

if TYPE_CHECKING:
    from ..audio.resolver import AudioResolver

PRESENT = "present"
#: A local file that exists but cannot serve as the clip (it does not hold the window, it is undecodable).
UNUSABLE = "unusable"

#: Permanent journal reasons, grouped as a user asks "why is it gone?"; any other permanent reason is "other".
GONE_CLASSES: dict[str, frozenset[str]] = {
    "private": frozenset({"private"}),
    "removed": frozenset({"removed", "unavailable", "account_terminated", "not_found", "gone"}),
    "region": frozenset({"region"}),
    "age_restricted": frozenset({"age_restricted"}),
    "copyright": frozenset({"copyright"}),
}
GONE_OTHER = "other"
#: Transient reasons that mean YouTube refuses this machine or session, not this clip.
BLOCKED_REASONS = frozenset({"bot_check", "rate_limited", "forbidden"})
#: Transient reasons that mean the installed yt-dlp gets no audio formats (no JS runtime, outdated).
SETUP_REASONS = frozenset({"format_unavailable"})
#: Classes of clips still to try.
TO_TRY_CLASSES = ("blocked", "setup", "other_transient", "never_tried", "unusable_local")

#: A run counts as blocked (or missing its set-up) when such failures are at least this share of the
#: clips tried: by then a re-run without changes mostly collects more of them.
BLOCKED_SHARE = 0.10
#: Below this share present among settled clips (present or gone for good), the run is called low: ten
#: points under the lower AudioSet reference.
LOW_SHARE = 0.74
#: Fewer settled clips than this say nothing about the share (a 10-clip test split is all noise).
MIN_SETTLED = 20
FETCH_DOCS = "docs/fetch.md"


@dataclass(frozen=True)
class Reference:
    """A share of YouTube clips others could still download, with where it was published."""

    name: str
    present: int
    clips: int
    source: str

    @property
    def share(self) -> float:
        return self.present / self.clips


REFERENCES = (
    Reference("AudioSet balanced train, fetched March 2023", 18685, 22160,
              "https://huggingface.co/datasets/agkphysics/AudioSet"),
    Reference("AudioSet eval, fetched March 2023", 17142, 20371,
              "https://huggingface.co/datasets/agkphysics/AudioSet"),
    Reference("AudioCaps train (aac-datasets)", 46231, 49838,
              "https://aac-datasets.readthedocs.io/en/stable/aac_datasets.datasets.audiocaps.html"),
)


@dataclass
class Availability:
    """Counts over a set of distinct clips: where the present ones are, and status and reason of the others."""

    clips: int = 0
    local: int = 0
    cached: int = 0
    #: ``(status, reason) -> clips`` for clips without audio: ``permanent``/``transient`` as the journal
    #: says, ``pending`` when no journal mentions them, ``unusable`` for a local file that cannot serve.
    missing: dict[tuple[str, str], int] = field(default_factory=dict)
    journals: int = 0

    @property
    def present(self) -> int:
        return self.local + self.cached

    @property
    def share(self) -> float:
        return self.present / self.clips if self.clips else 0.0

    def _count(self, status: str, reasons: frozenset[str] | None = None) -> int:
        return sum(n for (s, r), n in self.missing.items() if s == status and (reasons is None or r in reasons))

    @property
    def gone(self) -> int:
        """Missing for good: the journal's permanent failures."""
        return self._count(journal.PERMANENT)

    @property
    def to_try(self) -> int:
        """Transient failures, clips never tried, and local files that cannot serve (fetch downloads those)."""
        return self.clips - self.present - self.gone

    @property
    def blocked(self) -> int:
        return self._count(journal.TRANSIENT, BLOCKED_REASONS)

    @property
    def setup(self) -> int:
        return self._count(journal.TRANSIENT, SETUP_REASONS)

    @property
    def tried(self) -> int:
        """Clips with an answer: present, gone for good, or failed for now (not those never tried)."""
        return self.present + self.gone + self._count(journal.TRANSIENT)

    @property
    def settled_share(self) -> float | None:
        """The share present among clips whose fate is known (present or gone), comparable to :data:`REFERENCES`."""
        settled = self.present + self.gone
        return self.present / settled if settled else None

    def gone_by_class(self) -> dict[str, int]:
        out = dict.fromkeys([*GONE_CLASSES, GONE_OTHER], 0)
        for (status, reason), n in self.missing.items():
            if status == journal.PERMANENT:
                out[next((c for c, reasons in GONE_CLASSES.items() if reason in reasons), GONE_OTHER)] += n
        return out

    def to_try_by_class(self) -> dict[str, int]:
        out = dict.fromkeys(TO_TRY_CLASSES, 0)
        for (status, reason), n in self.missing.items():
            if status == journal.TRANSIENT:
                out["blocked" if reason in BLOCKED_REASONS else "setup" if reason in SETUP_REASONS
                    else "other_transient"] += n
            elif status == journal.PENDING:
                out["never_tried"] += n
            elif status == UNUSABLE:
                out["unusable_local"] += n
        return out

    def health(self) -> tuple[str, str]:
        """``(verdict, advice)``: ``blocked``, ``setup``, ``low``, ``healthy``, ``too_few`` or ``not_started``."""
        tried = self.tried
        if not tried:
            return "not_started", "no clip tried yet: run audio-dialogues fetch"
        if self.blocked and self.blocked >= BLOCKED_SHARE * tried:
            return "blocked", (
                f"YouTube is blocking this machine: {self.blocked} of {tried} clips tried failed with a bot check "
                "('Sign in to confirm you're not a bot'), HTTP 429 or 403. They are not gone; re-running as is mostly "
                f"collects more of these. Set up cookies, a PO-token provider and pacing ({FETCH_DOCS}, YouTube "
                "set-up: 'YouTube in 2026'), then run fetch again")
        if self.setup and self.setup >= BLOCKED_SHARE * tried:
            return "setup", (
                f"{self.setup} of {tried} clips tried failed with 'Requested format is not available': yt-dlp gets no "
                f"audio formats (no JavaScript runtime, or yt-dlp too old): run audio-dialogues fetch --check and see "
                f"{FETCH_DOCS}, 'YouTube in 2026', then run fetch again")
        share = self.settled_share
        if share is None or self.present + self.gone < MIN_SETTLED:
            return "too_few", f"too few clips settled ({self.present + self.gone}) to compare with others' shares"
        if share < LOW_SHARE:
            return "low", (
                f"{share:.1%} of settled clips present, well below what others measured ({_references()}): look at "
                "the reasons gone; many 'unavailable' may be a block in disguise")
        return "healthy", f"{share:.1%} of settled clips present; others measured {_references()}"

    def to_dict(self) -> dict[str, Any]:
        verdict, advice = self.health()
        share = self.settled_share
        return {
            "clips": self.clips, "present": self.present, "local": self.local, "cached": self.cached,
            "gone": self.gone, "to_try": self.to_try, "share_present": round(self.share, 6),
            "share_present_of_settled": None if share is None else round(share, 6),
            "gone_by_class": self.gone_by_class(), "to_try_by_class": self.to_try_by_class(),
            "by_reason": [{"status": s, "reason": r, "clips": n} for (s, r), n in _ordered(self.missing)],
            "health": {"verdict": verdict, "advice": advice},
        }

    def lines(self, label: str) -> list[str]:
        """A few lines for a person: counts, the reasons grouped, and the verdict."""
        share = self.settled_share
        out = [f"{label}: {self.clips} clips: {self.present} present ({self.share:.1%}), {self.gone} gone for good, "
               f"{self.to_try} still to try",
               f"  present: {self.local} in your audio folders, {self.cached} in the cache"
               + (f"; {share:.1%} of the {self.present + self.gone} settled clips (present or gone)"
                  if share is not None else "")]
        gone = {k: n for k, n in self.gone_by_class().items() if n}
        if gone:
            out.append("  gone for good: " + ", ".join(f"{k} {n}" for k, n in gone.items()))
        to_try = {k: n for k, n in self.to_try_by_class().items() if n}
        if to_try:
            out.append("  still to try: " + ", ".join(f"{k} {n}" for k, n in to_try.items()))
        verdict, advice = self.health()
        out.append(f"  health: {verdict}: {advice}")
        return out


def _ordered(missing: Mapping[tuple[str, str], int]) -> list[tuple[tuple[str, str], int]]:
    return sorted(missing.items(), key=lambda kv: (-kv[1], kv[0]))


def _references() -> str:
    return "; ".join(f"{r.share:.1%} of {r.name}" for r in REFERENCES)


@dataclass
class ClipStates:
    """Every requested clip's state, counted per subset on demand, and the journal summary for CSV export."""

    #: clip key -> (status, reason): ``present`` with ``audio_dir``/``cache``, else as in :attr:`Availability.missing`.
    states: dict[str, tuple[str, str]]
    #: clip key -> (``audio_dir`` or ``cache``, path) of the clips with audio.
    present: dict[str, tuple[str, str]]
    summary: journal.Summary
    journals: int = 0
    #: clip key -> clip, of every clip in :attr:`states`.
    clips: dict[str, Clip] = field(default_factory=dict)

    def count(self, clips: Iterable[Clip] | None = None) -> Availability:
        """:class:`Availability` of ``clips`` (default: all); each distinct clip once."""
        keys = self.states.keys() if clips is None else {c.key for c in clips}
        result = Availability(journals=self.journals)
        missing: Counter[tuple[str, str]] = Counter()
        for key in keys:
            status, reason = self.states[key]
            result.clips += 1
            if status == PRESENT:
                if reason != "cache":  # a local folder: the user's audio_dir or beside a release file
                    result.local += 1
                else:
                    result.cached += 1
            else:
                missing[(status, reason)] += 1
        result.missing = dict(_ordered(missing))
        return result


def clip_states(clips: Iterable[Clip], resolver: AudioResolver, state: journal.JournalState,
                journals: int = 0, where: Callable[[str], str] = lambda path: "audio_dir") -> ClipStates:
    """Look up every distinct clip as ``prepare`` would (``resolver``), the others in the merged journal ``state``.

    ``where`` names the folder a local file lies in (``audio_dir``, ``release_folder``: see
    :func:`audio_dialogues.sources.records.where_found`); a clip found in no local folder is in the ``cache``.
    """
    from ..audio.headers import UnusableAudioError

    unique = {c.key: c for c in clips}
    present: dict[str, tuple[str, str]] = {}
    unusable: dict[str, str] = {}
    for key, clip in unique.items():
        try:
            path = resolver.resolve(clip)
        except UnusableAudioError as err:
            unusable[key] = err.reason
            continue
        if path is not None:
            source = resolver.index.find(clip)  # a whole video found locally is cut into the cache
            present[key] = ("cache" if source is None else where(source), str(path))
    summary = journal.summarize(state, unique.values(), lambda c: c.key in present)
    states = {key: (PRESENT, where) for key, (where, _) in present.items()}
    for clip, status, reason, _ in summary.missing:
        states[clip.key] = (UNUSABLE, unusable[clip.key]) if clip.key in unusable else (status, reason)
    return ClipStates(states, present, summary, journals, unique)


def journal_states(state: journal.JournalState, journals: int = 0) -> ClipStates:
    """Every clip the journals mention, ``ok`` counting as present in the cache (no annotations to go by)."""
    summary = journal.summarize(state)
    states = {s.latest.key: (PRESENT, "cache") if s.status == journal.OK else (s.status, s.reason)
              for s in state.clips.values()}
    return ClipStates(states, {}, summary, journals, {s.latest.key: s.latest.clip for s in state.clips.values()})


@dataclass
class ShardProgress:
    """One shard of a sharded fetch: its clips' counts and the journals its runs wrote."""

    index: int
    availability: Availability
    journals: list[str] = field(default_factory=list)


def shard_progress(states: ClipStates, clips: Iterable[Clip], journal_paths: Iterable[str | Path]
                   ) -> tuple[int, list[ShardProgress]] | None:
    """Per shard of the sharded runs these journals come from: ``(number of shards, shards)``.

    ``None`` when no journal is a shard's, or when they come from runs with different numbers of shards
    (the per-shard split would then mean nothing).
    """
    named: dict[int, list[str]] = {}
    counts = set()
    for path in journal_paths:
        shard = journal.journal_shard(path)
        if shard is not None:
            counts.add(shard[1])
            named.setdefault(shard[0], []).append(Path(path).name)
    if len(counts) != 1:
        return None
    (n,) = counts
    by_shard: dict[int, list[Clip]] = {i: [] for i in range(n)}
    for clip in {c.key: c for c in clips}.values():
        by_shard[shard_index_of(clip.ytid, n)].append(clip)
    return n, [ShardProgress(i, states.count(by_shard[i]), sorted(named.get(i, []))) for i in range(n)]


def clip_availability(clips: Iterable[Clip], resolver: AudioResolver) -> Availability | None:
    """Availability of ``clips`` with the journals of the resolver's cache; None when neither local audio
    folders nor a fetch journal are known (nothing to say)."""
    files = journal.journal_files(resolver.cache_dir) if resolver.cache_dir is not None else []
    if not resolver.index.folders and not files:
        return None
    state = journal.load(resolver.cache_dir) if files else journal.merge([])  # type: ignore[arg-type]
    return clip_states(clips, resolver, state, len(files)).count()


SCHEMA_VERSION = 1


@dataclass
class StatusReport:
    """What ``audio-dialogues status`` reports: totals, per split, per shard, and the verdict; as text or data."""

    cache_dir: str
    journals: list[str]
    states: ClipStates
    #: The config reported and its clips per split; ``None``: the journals' own clips.
    config: str | None = None
    splits: dict[str, list[Clip]] = field(default_factory=dict)
    bad_journal_lines: int = 0

    def total(self) -> Availability:
        return self.states.count()

    def by_split(self) -> dict[str, Availability]:
        return {split: self.states.count(clips) for split, clips in self.splits.items()}

    def shards(self) -> tuple[int, list[ShardProgress]] | None:
        return shard_progress(self.states, self.states.clips.values(), self.journals)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data; the schema is documented in docs/fetch.md (``status --json``)."""
        shards = self.shards()
        return {
            "schema_version": SCHEMA_VERSION,
            "cache_dir": self.cache_dir,
            "journals": self.journals,
            "bad_journal_lines": self.bad_journal_lines,
            "config": self.config,
            "total": self.total().to_dict(),
            "splits": {split: a.to_dict() for split, a in self.by_split().items()},
            "shards": None if shards is None else {
                "num_shards": shards[0],
                "shards": [{"index": s.index, "journals": s.journals, **s.availability.to_dict()} for s in shards[1]]},
            "references": [{"name": r.name, "present": r.present, "clips": r.clips, "share": round(r.share, 4),
                            "source": r.source} for r in REFERENCES],
            "thresholds": {"blocked_share": BLOCKED_SHARE, "low_share": LOW_SHARE, "min_settled": MIN_SETTLED},
        }

    def lines(self) -> list[str]:
        """The availability part of ``status``'s text: per split, the total, per shard."""
        out = []
        splits = self.by_split()
        if len(splits) > 1 or self.config is None:
            for split, availability in splits.items():
                out += availability.lines(f"{self.config} {split}")
        out += self.total().lines(self.config + (f" {next(iter(splits))}" if len(splits) == 1 else "")
                                  if self.config else "journals")
        shards = self.shards()
        if shards is not None:
            n, progress = shards
            out.append(f"by shard (of {n}; a shard without journal has not run yet, or ran elsewhere):")
            for s in progress:
                a = s.availability
                out.append(f"  shard {s.index}: {a.present} present, {a.gone} gone, {a.to_try} to try of {a.clips}"
                           + (f" ({a.blocked} blocked)" if a.blocked else "")
                           + ("; journals: " + ", ".join(s.journals) if s.journals else "; no journal"))
        return out
