"""Shared helpers of the benchmarks: isolated caches, synthetic annotations, contention, tables and verdicts.

Benchmarks print ratios against a baseline measured in the same run, so a slow or busy machine moves
both sides; the contention figure says how busy it was, since 2 cores are shared with other people.
"""

from __future__ import annotations

import os
import random
import resource
import string
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

YTID_ALPHABET = string.ascii_letters + string.digits + "_-"

_WORDS = (
    "the a an of in on with while and then after before behind near distant loud soft faint sharp low high "
    "sound sounds noise music song melody rhythm beat drum drums guitar piano violin bass voice voices man "
    "woman child children crowd speech speaking talking laughing singing whistling engine car truck train "
    "siren horn bell dog bark barking bird birds chirping water rain wind thunder door footsteps clapping "
    "applause keyboard typing machine motor vehicle passing idling starts stops fades repeats continues "
    "background foreground clip seconds beginning end middle several single short long steady rising falling "
    "tempo upbeat mellow calm energetic reverb echo indoor outdoor room street kitchen forest city traffic"
).split()
_QUESTION_OPENERS = (
    "What", "Which", "How", "Is there", "Can you describe", "Does the clip have", "Where", "When", "Why",
)
_EVENT_LABELS = (
    "Speech", "Male speech, man speaking", "Female speech, woman speaking", "Music", "Dog", "Bark", "Vehicle",
    "Car", "Siren", "Bell", "Wind", "Rain", "Water", "Bird vocalization, bird call, bird song", "Engine",
    "Door", "Footsteps", "Clapping", "Laughter", "Typing", "Thunder", "Train", "Horn", "Guitar", "Drum",
)


def isolate_caches(root: Path) -> None:
    """Point every cache the package or `datasets` could touch into ``root``, and forbid network use.

    Must run before ``datasets`` is imported: it reads these variables once, at import time.
    """
    if "datasets" in sys.modules:
        raise RuntimeError("isolate_caches() must run before `datasets` is imported")
    os.environ["HF_HOME"] = str(root / "hf_home")
    os.environ["HF_DATASETS_CACHE"] = str(root / "hf_datasets")
    os.environ["AUDIO_DIALOGUES_CACHE"] = str(root / "clip_cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def random_ytids(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct 11-character YouTube-shaped ids (``_`` and ``-`` included, as in the wild)."""
    seen: set[str] = set()
    out = []
    while len(out) < n:
        ytid = "".join(rng.choices(YTID_ALPHABET, k=11))
        if ytid not in seen:
            seen.add(ytid)
            out.append(ytid)
    return out


def _sentence(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(_WORDS, k=rng.randint(low, high))
    return " ".join(words).capitalize()


def dialogue_turns(rng: random.Random) -> list[dict[str, str]]:
    """1-4 turns of Audio Dialogues-like length: questions of 5-18 words, answers of 12-60 words."""
    turns = []
    for _ in range(rng.randint(1, 4)):
        user = f"{rng.choice(_QUESTION_OPENERS)} {_sentence(rng, 4, 16).lower()}?"
        assistant = ". ".join(_sentence(rng, 6, 20) for _ in range(rng.randint(2, 3))) + "."
        turns.append({"user": user, "assistant": assistant})
    return turns


def sound_events(rng: random.Random) -> list[dict]:
    """0-6 strong-label events inside a 10 s clip, as regeneration writes them into ``meta``."""
    events = []
    for _ in range(rng.randint(0, 6)):
        start = round(rng.uniform(0, 9), 3)
        events.append({"label": rng.choice(_EVENT_LABELS), "start_s": start,
                       "end_s": round(rng.uniform(start + 0.1, 10.0), 3)})
    return events


def canonical_record(rng: random.Random, record_id: str, ytid: str) -> dict:
    """One canonical ``audioset`` record for a 10 s clip of ``ytid``."""
    start = float(rng.randrange(0, 300)) * 10.0
    return {
        "id": record_id,
        "clips": [{"ytid": ytid, "start_s": start, "end_s": start + 10.0}],
        "turns": dialogue_turns(rng),
        "meta": {"sound_events": sound_events(rng)},
    }


def _busy_jiffies() -> int | None:
    """System-wide non-idle CPU time from /proc/stat (None where there is no /proc)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user/nice
    return sum(fields) - idle - guest


@dataclass
class Contention:
    """How much CPU *other* processes used while a benchmark ran, in cores (machine-wide busy minus ours)."""

    wall_s: float = 0.0
    others_cores: float | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ncpu: int = field(default_factory=lambda: os.cpu_count() or 1)

    def describe(self) -> str:
        others = "n/a" if self.others_cores is None else f"{self.others_cores:.2f} of {self.ncpu} cores"
        la, lb = self.load_before, self.load_after
        return (f"machine: {self.ncpu} CPUs; load average before {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}, "
                f"after {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}; other processes used {others} on average "
                f"during the {self.wall_s:.0f} s run" + (" (BUSY: figures are pessimistic)"
                                                         if (self.others_cores or 0) > 0.3 else ""))


@contextmanager
def measure_contention() -> Iterator[Contention]:
    """Measure other processes' CPU use around a block (ours, including waited-for children, is subtracted)."""
    result = Contention(load_before=os.getloadavg())
    hz = os.sysconf("SC_CLK_TCK")
    t0, busy0, own0 = time.perf_counter(), _busy_jiffies(), _own_cpu_s()
    try:
        yield result
    finally:
        result.wall_s = time.perf_counter() - t0
        busy1, own1 = _busy_jiffies(), _own_cpu_s()
        if busy0 is not None and busy1 is not None and result.wall_s > 0:
            others = (busy1 - busy0) / hz - (own1 - own0)
            result.others_cores = max(0.0, others / result.wall_s)
        result.load_after = os.getloadavg()


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A compact fixed-width text table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


@dataclass
class Verdicts:
    """PASS/FAIL lines for the targets of one benchmark; ``exit_code`` is 1 when any target failed."""

    lines: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def check(self, name: str, measured: str, target: str, ok: bool) -> None:
        self.lines.append((name, measured, target, ok))

    def render(self) -> str:
        return table(["target", "measured", "wanted", "verdict"],
                     [(n, m, t, "PASS" if ok else "FAIL") for n, m, t, ok in self.lines])

    @property
    def exit_code(self) -> int:
        return 0 if all(ok for *_, ok in self.lines) else 1


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss_bytes() -> int:
    """Peak RSS of this interpreter, and of any child it waited for.

    ``VmHWM`` rather than ``getrusage(RUSAGE_SELF)``: Linux carries ``ru_maxrss`` across ``fork`` + ``execve``,
    so a child would report the *parent's* RSS at fork time when that is larger (here: the parent holding
    all generated records). ``VmHWM`` belongs to the address space made by ``execve``.
    """
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return max(status_bytes("VmHWM"), children)


def print_results(rows: Sequence[Sequence[object]], contention: Contention, verdicts: Verdicts,
                  headers: Sequence[str] = ("measure", "value")) -> int:
    """Print a benchmark's measures (a table under ``headers``; none when ``rows`` is empty), how busy the
    machine was and its verdicts; the exit code."""
    if rows:
        print(table(headers, rows))
    print()
    print(contention.describe())
    print()
    print(verdicts.render())
    return verdicts.exit_code
