"""YouTube clip references: the unit every part of the package agrees on.

Annotations name clips, not audio. A clip is a YouTube id plus a time window on the video; the
window may be unknown (release-shape records without source metadata). Parsing lives here once so
that no module ever splits an id on ``_`` (YouTube ids contain ``_`` and ``-``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import AudioDialoguesError

#: Exactly 11 ASCII characters; use with ``fullmatch`` (``$`` would also accept a trailing newline).
YTID_RE = re.compile(r"[A-Za-z0-9_-]{11}")
YTID_LENGTH = 11
#: AudioSet strong-label segments are 10 s long, starting at the millisecond offset in their id.
AUDIOSET_SEGMENT_S = 10.0
#: The shortest window that is a clip. Verification accepts +-50 ms around the requested length and an
#: AAC frame alone is 23 ms, so a shorter window could not be told apart from a failed cut; no dataset
#: of this package annotates anything near that short (AudioSet and MusicCaps clips are 10 s).
MIN_CLIP_S = 0.5
#: No YouTube video runs longer than 12 hours; times past a day are typos or unit mix-ups (ms for s).
MAX_TIME_S = 24 * 3600.0


class ClipError(AudioDialoguesError, ValueError):
    """A clip reference that cannot name a real YouTube segment."""


def check_ytid(ytid: object) -> str:
    """Return ``ytid`` if it is an 11-character YouTube id, else raise :class:`ClipError`."""
    if not isinstance(ytid, str) or not YTID_RE.fullmatch(ytid):
        odd = "" if not isinstance(ytid, str) else "".join(sorted(
            {f" {c!r} (U+{ord(c):04X})" for c in ytid if not (c.isascii() and (c.isalnum() or c in "_-"))}))
        raise ClipError(f"ytid {ytid!r} is not an 11-character YouTube id (ASCII letters, digits, '_' and '-')"
                        + (f"; it contains{odd}" if odd else ""))
    return ytid


def _check_time(name: str, value: object) -> float | None:
    if value is None:
        return None
    if (type(value) is float or type(value) is int) and 0 <= value <= MAX_TIME_S:  # the common case, fast
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClipError(f"{name} must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ClipError(f"{name} must be a finite, non-negative number of seconds, got {value!r}")
    if value > MAX_TIME_S:
        raise ClipError(f"{name} is {value!r} s, past {MAX_TIME_S:.0f} s (no video is that long; milliseconds?)")
    return value


@dataclass(frozen=True)
class Clip:
    """A segment ``[start_s, end_s)`` of the YouTube video ``ytid``; times are ``None`` when unknown."""

    ytid: str
    start_s: float | None = None
    end_s: float | None = None
    #: A stable, filename-safe key: ``<ytid>_<start ms>_<end ms>`` (or the bare ytid when untimed). Computed
    #: once: it names the clip in every cache lookup, journal line and report.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_ytid(self.ytid)
        start = _check_time("start_s", self.start_s)
        end = _check_time("end_s", self.end_s)
        if (start is None) != (end is None):
            raise ClipError(f"clip {self.ytid}: give both start_s and end_s or neither, got {start!r}, {end!r}")
        if start is not None and end is not None and end <= start:
            raise ClipError(f"clip {self.ytid}: end_s ({end}) must be after start_s ({start})")
        if start is not None and end is not None and end - start < MIN_CLIP_S:
            raise ClipError(f"clip {self.ytid}: the window [{start}, {end}) is {end - start:.6g} s long; "
                            f"a clip is at least {MIN_CLIP_S} s")
        object.__setattr__(self, "start_s", start)
        object.__setattr__(self, "end_s", end)
        object.__setattr__(self, "key", self.ytid if start is None or end is None else _key(self.ytid, start, end))

    @classmethod
    def many(cls, rows: Iterable[Sequence[object]]) -> list[Clip]:
        """``[Clip(*row) for row in rows]`` for rows of ``(ytid, start_s, end_s)``, at half the cost: for the
        100k-clip lists the cache remembers.

        A row that is plainly valid (an 11-character id, float times within [0, MAX_TIME_S] at least
        MIN_CLIP_S apart) is built without the checks' function calls; any other row goes through the
        constructor, which raises :class:`ClipError` for a bad one, as a row of another length does.
        """
        new, fullmatch, clips = object.__new__, YTID_RE.fullmatch, []
        for row in rows:
            try:
                ytid, start, end = row
            except (TypeError, ValueError):
                raise ClipError(f"a clip row is (ytid, start_s, end_s), got {row!r:.80}") from None
            if (type(start) is float and type(end) is float and 0.0 <= start and end <= MAX_TIME_S
                    and end - start >= MIN_CLIP_S and type(ytid) is str and fullmatch(ytid)):
                clip = new(cls)
                clip.__dict__.update(ytid=ytid, start_s=start, end_s=end, key=_key(ytid, start, end))
            else:
                clip = cls(*row)  # type: ignore[arg-type]  # checked there
            clips.append(clip)
        return clips

    @property
    def has_times(self) -> bool:
        return self.start_s is not None

    @property
    def duration_s(self) -> float | None:
        return None if self.start_s is None or self.end_s is None else self.end_s - self.start_s

    def to_dict(self) -> dict:
        return {"ytid": self.ytid, "start_s": self.start_s, "end_s": self.end_s}

    @classmethod
    def from_segment_id(cls, segment_id: str, duration_s: float = AUDIOSET_SEGMENT_S) -> Clip:
        """Parse an AudioSet strong-label ``segment_id`` (``<11-char ytid>_<start ms>``).

        The id is the first 11 characters; what follows the separating ``_`` is the start in ms.
        """
        ytid, start_ms = parse_segment_id(segment_id)
        start = start_ms / 1000.0
        return cls(ytid, start, start + duration_s)


def _key(ytid: str, start: float, end: float) -> str:
    return f"{ytid}_{round(start * 1000)}_{round(end * 1000)}"


def parse_segment_id(segment_id: str) -> tuple[str, int]:
    """Split ``<11-char ytid>_<start ms>`` into ``(ytid, start_ms)`` without splitting the id on ``_``."""
    if (
        not isinstance(segment_id, str)
        or len(segment_id) < YTID_LENGTH + 2
        or segment_id[YTID_LENGTH] != "_"
        or not segment_id[YTID_LENGTH + 1 :].isascii()
        or not segment_id[YTID_LENGTH + 1 :].isdigit()
    ):
        raise ClipError(f"segment_id {segment_id!r} is not '<11-char YouTube id>_<start ms>'")
    try:
        return check_ytid(segment_id[:YTID_LENGTH]), int(segment_id[YTID_LENGTH + 1 :])
    except ClipError as e:
        raise ClipError(f"segment_id {segment_id!r}: {e}") from None
