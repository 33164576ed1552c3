"""Is this audio file the clip that was asked for? Decode it and check length, rate and channels.

Downloaders report success for empty or short files (a dropped connection, a server without byte
ranges, a video shorter than the annotation says). Nothing enters the cache without passing
:func:`check_clip`, and the only accepted shortfall is one explained by the source itself ending early,
which is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudioDialoguesError
from ..sources.clips import Clip

_BLOCK = 1 << 16


class VerificationError(AudioDialoguesError):
    """A downloaded or cached clip is not the requested segment."""

    def __init__(self, message: str, *, permanent: bool = False, reason: str = "verification") -> None:
        super().__init__(message)
        self.permanent = permanent
        self.reason = reason


@dataclass(frozen=True)
class AudioFacts:
    """What decoding the whole file showed (never the header's claims alone)."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def decode_facts(path: str | Path) -> AudioFacts:
    """Decode ``path`` to the end and count its frames; raise :class:`VerificationError` if it cannot."""
    # Imported here, not with the module: soundfile brings numpy (~0.3 s), which a re-run whose clips are
    # all cached (a read and a stat each) never needs.
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            frames = 0
            while True:
                block = f.read(_BLOCK, dtype="int16", always_2d=True)
                if not len(block):
                    break
                frames += len(block)
            return AudioFacts(frames, f.samplerate, f.channels)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise VerificationError(f"{path}: cannot decode: {err}") from err


@dataclass(frozen=True)
class Verdict:
    """A clip that passed: how much shorter than requested it is (source ended early), and why."""

    facts: AudioFacts
    short_by_s: float = 0.0
    source_duration_s: float | None = None


def check_clip(
    facts: AudioFacts,
    clip: Clip,
    *,
    sample_rate: int | None,
    channels: int | None,
    tolerance_s: float,
    source_duration: Callable[[], tuple[float | None, float]],
) -> Verdict:
    """Accept ``facts`` as ``clip`` or raise :class:`VerificationError`.

    ``source_duration()`` returns ``(seconds or None, uncertainty in seconds)``; it is called only when
    the clip is short, since finding it may cost a request. A short clip passes only when the source ends
    where the clip ends; a clip starting at or after the source's end fails permanently.
    """
    assert clip.start_s is not None and clip.end_s is not None
    if sample_rate is not None and facts.sample_rate != sample_rate:
        raise VerificationError(f"clip {clip.key}: sample rate {facts.sample_rate} Hz, asked for {sample_rate} Hz")
    if channels is not None and facts.channels != channels:
        raise VerificationError(f"clip {clip.key}: {facts.channels} channels, asked for {channels}")
    wanted = clip.end_s - clip.start_s
    got = facts.duration_s
    if got > wanted + tolerance_s:
        raise VerificationError(f"clip {clip.key}: {got:.3f} s long, asked for {wanted:.3f} s")
    if got >= wanted - tolerance_s:
        return Verdict(facts)
    source_s, uncertainty = source_duration()
    if source_s is None:
        raise VerificationError(
            f"clip {clip.key}: {got:.3f} s long, asked for {wanted:.3f} s, and the source's length is unknown",
            reason="short_clip",
        )
    if source_s <= clip.start_s + tolerance_s:
        raise VerificationError(
            f"clip {clip.key}: starts at {clip.start_s:.3f} s but the source is only {source_s:.3f} s long",
            permanent=True, reason="beyond_source_end",
        )
    if clip.start_s + got >= source_s - tolerance_s - uncertainty:
        return Verdict(facts, short_by_s=round(wanted - got, 6), source_duration_s=source_s)
    raise VerificationError(
        f"clip {clip.key}: {got:.3f} s long, asked for {wanted:.3f} s, yet the source runs to {source_s:.3f} s "
        "(truncated download)",
        reason="short_clip",
    )
